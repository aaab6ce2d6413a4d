"""Start-up time and size of scripts/build-dist's self-contained amp-exporter, against the
source install (.venv/bin/amp-exporter) and the PyInstaller build before staticx, measured
in the same run: `--version`, and `textfile` of an example host, each run N times in turn.

    ./scripts/build-dist && .venv/bin/python bench/dist.py [--runs N] [--old-root DIR]

--old-root DIR also runs both frozen builds chrooted into DIR (e.g. a `debootstrap
--variant=minbase bullseye` root, glibc 2.31) and prints what each said."""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from amp_exporter import __version__  # noqa: E402

DIST = REPO / "dist"
BUILDS = {
    "self-contained (staticx)": DIST / f"amp-exporter-{__version__}-linux-x86_64",
    "PyInstaller only": REPO / "build/dist-work/pyinstaller/amp-exporter",
    "source install (.venv)": REPO / ".venv/bin/amp-exporter",
}
HOST = "healthy-ebpf-btf"


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--old-root", type=Path)
    args = parser.parse_args()
    missing = [str(p) for p in BUILDS.values() if not p.exists()]
    if missing:
        print(f"missing: {', '.join(missing)} (./scripts/build-dist, ./scripts/setup)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(REPO / "examples/build_hosts.py"), tmp, HOST],
                       check=True, stdout=subprocess.DEVNULL)
        commands = {"--version": ["--version"],
                    f"textfile {HOST}": ["textfile", "--output", "-", "--path.rootfs",
                                         f"{tmp}/{HOST}"]}
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):  # interleaved: drift hits every build alike
            for build, exe in BUILDS.items():
                for command, argv in commands.items():
                    times.setdefault((build, command), []).append(timed([str(exe), *argv]))
    print(f"start-up, seconds over {args.runs} runs (min / median)")
    for command in commands:
        print(f"  {command}")
        for build in BUILDS:
            t = times[(build, command)]
            print(f"    {build:26} {min(t):.3f} / {statistics.median(t):.3f}")
    print("sizes")
    for path in (*list(BUILDS.values())[:2], DIST / f"amp-exporter_{__version__}_amd64.deb",
                 DIST / f"amp-exporter-{__version__}-1.x86_64.rpm"):
        print(f"  {path.relative_to(REPO)}: {path.stat().st_size / 1e6:.1f} MB")
    if args.old_root:
        print(f"in {args.old_root}:")
        for build, exe in list(BUILDS.items())[:2]:
            shutil.copy2(exe, args.old_root / "amp-exporter-bench")
            result = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount -t proc proc "$0/proc" && exec chroot "$0" /amp-exporter-bench '
                 '--version', str(args.old_root)], capture_output=True, text=True)
            said = (result.stdout + result.stderr).strip().splitlines()
            print(f"  {build}: exit {result.returncode}: {said[-1] if said else ''}")
            (args.old_root / "amp-exporter-bench").unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
