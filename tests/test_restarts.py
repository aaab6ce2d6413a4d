"""Scan-service restarts: counted once each, never on the first collection, under
concurrent scrapes; on example trees that change (their cgroup files changed as the
kernel changes them, so the restart is found through the connector's cgroup, without
listing proc, in v1, hybrid and v2 layouts), and on real processes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import Scrape, concurrently, parse_exposition
from test_process_tracking import connector

from amp_exporter.cli import build_parser, exposition, make_exporter
from amp_exporter.host import processes


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


def cgroup_procs(root: Path) -> list[Path]:
    """Every cgroup.procs of the tree (the connector's unit's, in each hierarchy)."""
    return sorted((root / "sys/fs/cgroup").rglob("cgroup.procs"))


def in_cgroups(root: Path, old: int | None, new: int | None) -> None:
    """What the kernel does to the cgroups: OLD leaves every cgroup it was in, and NEW is
    in the ones the daemon is in (where the daemon starts it)."""
    daemon = pid_of(root, "ampdaemon")
    for procs in cgroup_procs(root):
        pids = {int(w) for w in procs.read_text().split()}
        if new is not None and (old in pids or daemon in pids):
            pids.add(new)
        pids.discard(old)
        procs.write_text("".join(f"{pid}\n" for pid in sorted(pids)))


def restart(root: Path, comm: str, new_pid: int) -> None:
    """What a restart looks like in proc: the old PID's directory goes, a new PID with a
    later start time appears (in the old one's cgroups)."""
    old = pid_of(root, comm)
    in_cgroups(root, old, new_pid)
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


def listings() -> int:
    return processes.COUNTS.proc_listings


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
            before = listings()
            s = scrape(exporter)
            assert listings() == before  # found in the cgroup
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
        in_cgroups(root, pid, None)
        s = scrape(exporter)
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 0
        # momentary while fault 7 is clear (catalog.Cause): up 0 says it, no cause
        assert s.causes(7)["scan_service_not_running"] == 0
        shutil.move(parked, root / "proc" / str(pid + 7))
        in_cgroups(root, None, pid + 7)
        restart(root, "ampscansvc", pid + 8)
        s = scrape(exporter)
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
        assert s.value("cisco_amp_scan_service_restarts_total") == 1
    finally:
        exporter.close()


@pytest.mark.parametrize("name", [
    "rhel7-kmod-healthy",  # v1: name=systemd, then pids
    "ubuntu1804-ebpf-headers-healthy",  # hybrid: unified beside v1
    "debian12-ebpf-core-healthy",  # v2 only
])
def test_example_trees_are_followed_through_their_cgroup(host_copy, name):
    root = host_copy(name)
    assert cgroup_procs(root)
    exporter = exporter_for(root)
    try:
        before = listings()
        s = scrape(exporter)
        # The first collection finds the connector in its unit's cgroup: no listing of proc.
        assert listings() == before, exporter.shared.processes.listing_reason
        assert s.value("cisco_amp_process_up", process="ampdaemon") == 1
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
        restart(root, "ampscansvc", 50001)
        restart(root, "ampdaemon", 50002)
        s = scrape(exporter)
        assert listings() == before, exporter.shared.processes.listing_reason
        assert s.value("cisco_amp_process_restarts_total", process="ampscansvc") == 1
        assert s.value("cisco_amp_process_restarts_total", process="ampdaemon") == 1
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
        # A tree without the cgroup (a container given proc only): proc is listed, and the
        # restart counts all the same.
        shutil.rmtree(root / "sys/fs/cgroup")
        restart(root, "ampscansvc", 50003)
        s = scrape(exporter)
        assert listings() == before + 1
        assert s.value("cisco_amp_scan_service_restarts_total") == 2
        assert s.success()["processes"] == 1
    finally:
        exporter.close()


def test_a_unit_cgroup_naming_none_of_the_connector_is_not_trusted(host_copy):
    """A stale or foreign cisco-amp.service cgroup (PIDs that are gone, or that run other
    programs) does not stand in for the listing: proc is listed and the connector found."""
    root = host_copy("healthy-ebpf-btf")
    (procs,) = cgroup_procs(root)
    pids = [int(p) for p in procs.read_text().split()]
    sshd = next(p.name for p in (root / "proc").iterdir()
                if (p / "comm").is_file() and (p / "comm").read_text().strip() == "sshd")
    procs.write_text(f"{sshd}\n{max(pids) + 1000}\n")  # another program, and one gone
    exporter = exporter_for(root)
    try:
        before = listings()
        s = scrape(exporter)
        assert listings() == before + 1
        assert exporter.shared.processes.listing_reason == "first collection"
        assert s.value("cisco_amp_process_up", process="ampdaemon") == 1
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
    finally:
        exporter.close()


# -- real processes, in namespaces of their own (test_process_tracking.Connector) ----------

def test_real_processes_restart_and_churn():
    with connector("hybrid", collectors=("processes", "bpf")) as c:
        c.start("ampdaemon")
        scansvc = c.start("ampscansvc")
        s, _ = c.scrape()
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
        assert s.value("cisco_amp_process_resident_memory_bytes", process="ampdaemon") > 0
        assert s.value("cisco_amp_bpf_programs", process="ampdaemon") == 0
        # Processes that come and go while we scrape never break a scrape.
        c.ask("churn", n=50)
        for _ in range(5):
            assert set(c.scrape()[0].success().values()) == {1}
        c.ask("reap")
        c.stop(scansvc)
        assert c.scrape()[0].value("cisco_amp_process_up", process="ampscansvc") == 0
        c.start("ampscansvc")
        s, _ = c.scrape()
        assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
        assert s.value("cisco_amp_scan_service_restarts_total") == 1
        assert s.success() == {"processes": 1, "bpf": 1}
