"""Start-up time, memory and size of scripts/build-dist's self-contained amp-exporter (PyInstaller
--onedir with glibc bundled, at /usr/lib/amp-exporter), against the build it replaced
(PyInstaller --onefile wrapped by staticx, which this script builds into build/bench-staticx
when it is missing or older than the sources: ~15 s) and the source install
(.venv/bin/amp-exporter), measured in the same run:

  * `--version`, `textfile` of an example host, and one start of ampcli's chroot helper (the
    frozen program as `--amp-exporter-internal-chroot-helper`, the source install's Python
    with -I -S), failing at its chroot: each build in turn, N rounds (min/median);
  * memory while serving that host, after two scrapes: the processes it runs as, their RSS
    and USS (what each process alone holds) summed, and what it unpacked into $TMPDIR;
  * sizes on disk.

    ./scripts/build-dist && .venv/bin/python bench/dist.py [--runs N]

As root: the onedir build runs only from /usr/lib/amp-exporter, so the measurements run in
a private mount namespace where the tarball's usr/lib is laid over /usr/lib (overlayfs);
nothing on the machine changes. (tests/test_dist.py runs the build in an empty root and in
a Debian 11 root; this is about cost.)"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from amp_exporter import __version__  # noqa: E402
from amp_exporter.host import ampcli  # noqa: E402

DIST = REPO / "dist"
TARBALL = DIST / f"amp-exporter-{__version__}-linux-x86_64.tar.gz"
PREFIX = "/usr/lib/amp-exporter"
STATICX_DIR = REPO / "build/bench-staticx"
STATICX = STATICX_DIR / "amp-exporter-staticx"
STATICX_VERSION = "0.14.2"  # 0.14.0 is yanked on PyPI
BUILDS = {
    "onedir, glibc bundled": f"{PREFIX}/amp-exporter",
    "onefile + staticx (old)": str(STATICX),
    "source install (.venv)": str(REPO / ".venv/bin/amp-exporter"),
}
HOST = "healthy-ebpf-btf"
INSIDE = "AMP_BENCH_TREE"  # set in the mount namespace: where the tarball is extracted


def build_staticx() -> None:
    """The old build, as scripts/build-dist made it before --onedir, if not up to date."""
    sources = [p for p in (REPO / "amp_exporter").rglob("*.py")]
    sources += [REPO / "deploy/packages/frozen_main.py", REPO / "pyproject.toml"]
    if STATICX.exists() and STATICX.stat().st_mtime > max(p.stat().st_mtime for p in sources):
        return
    started = time.monotonic()
    venv = STATICX_DIR / "venv"
    if not (venv / "bin/python").exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    requirements = REPO / "build/dist-work/requirements.txt"  # build-dist's: deps, PyInstaller
    pip = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", "-r", str(requirements),
                          f"staticx=={STATICX_VERSION}"], capture_output=True, text=True)
    if pip.returncode != 0:
        raise SystemExit(f"pip install for the staticx build failed:\n{pip.stdout}{pip.stderr}")
    work = STATICX_DIR / "work"
    shutil.rmtree(work, ignore_errors=True)
    data = []
    for f in ("amp_exporter/__init__.py", "amp_exporter/host/__init__.py",
              "amp_exporter/host/ebpf_loader.py", "amp_exporter/host/ebpf_program.py"):
        data += ["--add-data", f"{REPO / f}:{os.path.dirname(f)}"]
    subprocess.run([str(venv / "bin/pyinstaller"), "--onefile", "--noconfirm", "--clean",
                    "--log-level", "WARN", "--name", "amp-exporter", "--paths", str(REPO),
                    "--distpath", str(work), "--workpath", str(work / "work"),
                    "--specpath", str(work), "--collect-submodules", "amp_exporter",
                    "--exclude-module", "bcc", *data,
                    str(REPO / "deploy/packages/frozen_main.py")], check=True, cwd=REPO)
    subprocess.run([str(venv / "bin/staticx"), "--no-compress", str(work / "amp-exporter"),
                    str(STATICX)], check=True)
    print(f"built {STATICX.relative_to(REPO)} in {time.monotonic() - started:.0f} s")


def timed(argv: list[str], env: dict, ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    code = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=env).returncode
    took = time.perf_counter() - start
    assert code in ok, f"{argv[:3]}: exit {code}"
    return took


def du(path: Path) -> int:
    """Bytes of the regular files under PATH (or PATH itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def serving(exe: str, host: str, env: dict, tmpdir: Path) -> tuple[int, float, float, int]:
    """(processes, RSS MB, USS MB, bytes in TMPDIR) of EXE serving HOST, after two scrapes."""
    proc = subprocess.Popen([exe, "serve", "--path.rootfs", host, "--web.listen-address",
                             "127.0.0.1:0"], stderr=subprocess.PIPE, text=True,
                            env={**env, "TMPDIR": str(tmpdir)})
    try:
        port = None
        for line in proc.stderr:
            found = re.search(r"msg=listening address=127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port, f"{exe} did not start"
        for _ in range(2):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                r.read()
        top = psutil.Process(proc.pid)
        tree = [top, *top.children(recursive=True)]
        info = [p.memory_full_info() for p in tree]
        return (len(tree), sum(i.rss for i in info) / 1e6, sum(i.uss for i in info) / 1e6,
                du(tmpdir))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def measure(runs: int, tree: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (INSIDE, "PYTHONPATH")}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(REPO / "examples/build_hosts.py"), tmp, HOST],
                       check=True, stdout=subprocess.DEVNULL)
        host = f"{tmp}/{HOST}"
        helper = ["2", "/nonexistent", "/opt/cisco/amp/bin/ampcli", "status"]  # FD ROOT PATH
        venv_python = str(REPO / ".venv/bin/python")
        commands = {
            "--version": lambda exe: [exe, "--version"],
            f"textfile {HOST}": lambda exe: [exe, "textfile", "--output", "-",
                                             "--path.rootfs", host],
            "chroot helper": lambda exe: (
                [venv_python, "-I", "-S", "-c", ampcli._HELPER, *helper] if ".venv" in exe
                else [exe, ampcli.FROZEN_HELPER_ARG, *helper]),
        }
        for exe in BUILDS.values():  # each once before timing: page cache, pyc
            for argv in commands.values():
                timed(argv(exe), env, ok=(0, 127))
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(runs):  # interleaved: drift hits every build alike
            for build, exe in BUILDS.items():
                for command, argv in commands.items():
                    times.setdefault((build, command), []).append(
                        timed(argv(exe), env, ok=(0, 127)))
        memory = {}
        for build, exe in BUILDS.items():
            scratch = Path(tmp) / f"tmpdir-{len(memory)}"
            scratch.mkdir()
            memory[build] = serving(exe, host, env, scratch)
    print(f"start-up, seconds over {runs} runs (min / median)")
    for command in commands:
        print(f"  {command}")
        for build in BUILDS:
            t = times[(build, command)]
            print(f"    {build:26} {min(t):.3f} / {statistics.median(t):.3f}")
    print(f"serving {HOST}, after two scrapes: processes, RSS, USS (summed), unpacked in $TMPDIR")
    for build, (count, rss, uss, unpacked) in memory.items():
        print(f"    {build:26} {count}  {rss:5.1f} MB  {uss:5.1f} MB  {unpacked / 1e6:5.1f} MB")
    print("sizes on disk")
    venv = REPO / ".venv"
    for name, path in ((f"onedir {PREFIX} (installed)", tree / PREFIX[1:]),
                       ("onefile + staticx binary", STATICX),
                       (".venv (source install, with its test extras)", venv),
                       (TARBALL.name, TARBALL),
                       (f"amp-exporter_{__version__}_amd64.deb",
                        DIST / f"amp-exporter_{__version__}_amd64.deb"),
                       (f"amp-exporter-{__version__}-1.x86_64.rpm",
                        DIST / f"amp-exporter-{__version__}-1.x86_64.rpm")):
        print(f"    {name:46} {du(path) / 1e6:6.1f} MB")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    if os.environ.get(INSIDE):
        measure(args.runs, Path(os.environ[INSIDE]))
        return 0
    missing = [str(p) for p in (TARBALL, REPO / ".venv/bin/amp-exporter",
                                REPO / "build/dist-work/requirements.txt") if not p.exists()]
    if missing:
        print(f"missing: {', '.join(missing)} (./scripts/build-dist, ./scripts/setup)")
        return 1
    if os.geteuid() != 0:
        print("needs root: the onedir build is put at /usr/lib/amp-exporter in a mount namespace")
        return 1
    build_staticx()
    with tempfile.TemporaryDirectory() as tree:
        subprocess.run(["tar", "-C", tree, "-xzf", str(TARBALL)], check=True)
        # The machine's /usr/lib with the bundle over it, in a namespace that ends with us.
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t overlay overlay -o "lowerdir=$0/usr/lib:/usr/lib" /usr/lib && exec "$@"',
             tree, sys.executable, str(Path(__file__).resolve()), "--runs", str(args.runs)],
            env={**os.environ, INSIDE: tree}).returncode


if __name__ == "__main__":
    raise SystemExit(main())
