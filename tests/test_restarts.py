"""Scan-service restarts: counted once each, never on the first collection, under
concurrent scrapes; on example trees that change, and on real processes."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from conftest import Scrape, concurrently, parse_exposition

from amp_exporter.cli import build_parser, exposition, make_exporter


def exporter_for(root: Path, *flags: str):
    args = build_parser().parse_args(["textfile", "--output", "-", "--path.rootfs", str(root),
                                      "--ampcli.cache", "0", *flags])
    exporter = make_exporter(args)
    return exporter


def scrape(exporter) -> Scrape:
    return Scrape(parse_exposition(exposition(exporter).decode()))


def pid_of(root: Path, comm: str) -> int:
    for entry in (root / "proc").iterdir():
        if entry.name.isdigit() and (entry / "comm").read_text().strip() == comm:
            return int(entry.name)
    raise LookupError(comm)


def restart(root: Path, comm: str, new_pid: int) -> None:
    """What a restart looks like in proc: the old PID's directory goes, a new PID with a
    later start time appears."""
    old = pid_of(root, comm)
    src, dst = root / "proc" / str(old), root / "proc" / str(new_pid)
    shutil.copytree(src, dst, symlinks=True)
    shutil.rmtree(src)
    stat = (dst / "stat").read_text()
    head, _, tail = stat.rpartition(")")
    fields = tail.split()
    fields[19] = str(int(fields[19]) + 1000)  # starttime: ten seconds later
    (dst / "stat").write_text(f"{new_pid} ({head.partition('(')[2]}) {' '.join(fields)}\n")
    status = (dst / "status").read_text()
    (dst / "status").write_text(re.sub(r"^(Pid|Tgid):\s+\d+", rf"\1:\t{new_pid}", status,
                                       flags=re.M))


def test_restarts_counted_once_each_and_never_on_first_collection(host_copy):
    root = host_copy("fault-6-scan-restarting")
    exporter = exporter_for(root)
    try:
        first = scrape(exporter)
        assert first.value("cisco_amp_scan_service_restarts_total") == 0
        assert first.causes(6) == {"scan_service_restarts": 0}
        assert scrape(exporter).value("cisco_amp_scan_service_restarts_total") == 0
        for n, pid in enumerate((50001, 50002, 50003), start=1):
            restart(root, "ampscansvc", pid)
            s = scrape(exporter)
            assert s.value("cisco_amp_scan_service_restarts_total") == n
            assert s.value("cisco_amp_process_restarts_total", process="ampscansvc") == n
            # the default threshold is 3 restarts in 10 minutes
            assert s.causes(6) == {"scan_service_restarts": 1.0 if n >= 3 else 0.0}
        again = scrape(exporter)
        assert again.value("cisco_amp_scan_service_restarts_total") == 3
        assert again.value("cisco_amp_process_restarts_total", process="ampdaemon") == 0
    finally:
        exporter.close()


def test_concurrent_scrapes_count_a_restart_once(host_copy):
    root = host_copy("healthy-ebpf-btf")
    exporter = exporter_for(root)
    try:
        scrape(exporter)
        restart(root, "ampscansvc", 60001)
        results = concurrently(lambda: scrape(exporter), 16)
        assert {r.value("cisco_amp_scan_service_restarts_total") for r in results} == {1}
    finally:
        exporter.close()


def test_scan_service_gone_then_back_counts_one_restart(host_copy):
    root = host_copy("healthy-ebpf-btf")
    exporter = exporter_for(root)
    try:
        scrape(exporter)
        pid = pid_of(root, "ampscansvc")
        parked = root / "parked"
        shutil.move(root / "proc" / str(pid), parked)
        s = scrape(exporter)
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 0
        # momentary while fault 7 is clear (catalog.Cause): up 0 says it, no cause
        assert s.causes(7)["scan_service_not_running"] == 0
        shutil.move(parked, root / "proc" / str(pid + 7))
        restart(root, "ampscansvc", pid + 8)
        s = scrape(exporter)
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
        assert s.value("cisco_amp_scan_service_restarts_total") == 1
    finally:
        exporter.close()


# -- real processes on this machine (live_connector: see conftest) ---------------------------

def test_real_processes_restart_and_churn(live_connector):
    live_connector("ampdaemon")
    scansvc = live_connector("ampscansvc")
    time.sleep(0.1)
    args = build_parser().parse_args(["textfile", "--output", "-", "--collector.disable-defaults",
                                      "--collector.processes", "--collector.bpf"])
    exporter = make_exporter(args)
    try:
        s = scrape(exporter)
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
        assert s.value("cisco_amp_process_resident_memory_bytes", process="ampdaemon") > 0
        assert s.value("cisco_amp_bpf_programs", process="ampdaemon") == 0
        # Processes that come and go while we scrape never break a scrape.
        churn = [subprocess.Popen(["sleep", "0.01"]) for _ in range(50)]
        for _ in range(5):
            assert set(scrape(exporter).success().values()) == {1}
        for p in churn:
            p.wait()
        scansvc.kill()
        scansvc.wait()
        assert scrape(exporter).value("cisco_amp_process_up", process="ampscansvc") == 0
        live_connector("ampscansvc")
        time.sleep(0.1)
        s = scrape(exporter)
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
        assert s.value("cisco_amp_scan_service_restarts_total") == 1
    finally:
        exporter.close()
