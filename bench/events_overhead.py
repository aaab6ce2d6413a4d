"""Cost of the events collector's eBPF probes, measured against no probes in the same run.

    .venv/bin/python bench/events_overhead.py [--rounds 5] [--execs 2000] [--opens 500000]

Runs an exec storm and an open storm (bench/storm.c, compiled here) alternately with and
without a real `amp-exporter serve` holding the eBPF source, and prints median times and
their ratio (target: exec storm under 5% slower). Also prints how long loading took and
the serving process's RSS with the eBPF source and with procfs only. Needs root, bcc,
tracefs and kernel headers (scripts/test-setup-ebpf prepares this machine).
"""

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
sys.path.insert(0, str(REPO / "examples"))
import build_hosts  # noqa: E402


class Exporter:
    def __init__(self, root: Path, source: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amp_exporter", "serve", "--path.rootfs", str(root),
             "--path.procfs", "/proc", "--path.sysfs", "/sys", "--collector.disable-defaults",
             "--collector.events", "--events.source", source,
             "--web.listen-address", "127.0.0.1:0"],
            stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        for line in self.proc.stderr:
            match = re.search(r"address=127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
        self.started = time.monotonic()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            return r.read().decode()

    def wait_for(self, source: str) -> float:
        while f'amp_exporter_events_source{{source="{source}"}} 1.0' not in self.metrics():
            if time.monotonic() - self.started > 60:
                raise RuntimeError(f"{source} source never became active")
            time.sleep(0.05)
        return time.monotonic() - self.started

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def storm(binary: Path, mode: str, n: int, target: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(binary), mode, str(n), str(target)], check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--execs", type=int, default=2000)
    parser.add_argument("--opens", type=int, default=500_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="amp-bench-"))
    try:
        return run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args: argparse.Namespace) -> int:
    binary = work / "storm"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(REPO / "bench/storm.c")], check=True)
    target = work / "file"
    target.write_text("x")
    root = build_hosts.build(work / "hosts", ["no-connector"])["no-connector"]

    procfs = Exporter(root, "procfs")
    procfs.wait_for("procfs")
    for _ in range(20):
        procfs.metrics()
    rss_procfs = procfs.rss_mib()
    procfs.stop()

    times: dict[tuple[str, bool], list[float]] = {}
    load_seconds, rss_ebpf = [], 0.0
    for _ in range(args.rounds):
        for attached in (False, True):  # alternate, so machine noise hits both alike
            exporter = None
            if attached:
                exporter = Exporter(root, "ebpf")
                load_seconds.append(exporter.wait_for("ebpf"))
            for mode, n in (("exec", args.execs), ("open", args.opens)):
                times.setdefault((mode, attached), []).append(storm(binary, mode, n, target))
            if exporter is not None:
                for _ in range(20):
                    exporter.metrics()
                rss_ebpf = exporter.rss_mib()
                exporter.stop()

    print(f"events probe overhead, {args.rounds} rounds, medians (same run, same machine)\n")
    print(f"{'storm':<22}{'no probes':>12}{'eBPF probes':>14}{'ratio':>9}")
    ratio = {}
    for mode, n in (("exec", args.execs), ("open", args.opens)):
        base = statistics.median(times[(mode, False)])
        probed = statistics.median(times[(mode, True)])
        ratio[mode] = probed / base
        print(f"{f'{mode} x{n}':<22}{base:>11.3f}s{probed:>13.3f}s{ratio[mode]:>9.3f}")
    print(f"\n{'serving RSS':<22}{'procfs only':>12}{'eBPF source':>14}{'diff':>9}")
    print(f"{'':<22}{rss_procfs:>10.1f}MiB{rss_ebpf:>12.1f}MiB"
          f"{rss_ebpf - rss_procfs:>6.1f}MiB")
    print(f"\nstart to eBPF source active (incl. compile in the child): median "
          f"{statistics.median(load_seconds):.2f}s, max {max(load_seconds):.2f}s")
    missed = [name for name, met in (("exec storm under 5% slower", ratio["exec"] < 1.05),
                                     ("serving RSS within 5 MiB", rss_ebpf - rss_procfs < 5))
              if not met]
    print("\ntargets missed: " + ("; ".join(missed) if missed else "0"))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
