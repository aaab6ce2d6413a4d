"""bench/soak.py in small, so that CI runs the soak's logic: its checks pass on the exporter
as it is and fail on one that counts a scan-service restart twice; and the restart the
soak found miscounted (the daemon's fork, seen before it execs the scan service)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace

import pytest
from conftest import REPO, builder

from amp_exporter.host.paths import HostPaths
from amp_exporter.host.processes import ProcessTable


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak", REPO / "bench" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_soak_passes(soak, capsys):
    # One cycle of the script (51 changes, six restarts four ways) over 600 scrapes, and
    # node_exporter beside it where it is installed.
    code = soak.main(["--scrapes", "600", "--cycles", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "6 performed, 6 counted" in out
    assert "checks and targets failed: 0" in out


DOUBLE_COUNTING = """
import runpy
from amp_exporter.host import processes

count = processes.ProcessTable._count_restarts


def twice(self, found, now):
    before = dict(self._restarts)
    count(self, found, now)
    for name, n in list(self._restarts.items()):
        self._restarts[name] += n - before.get(name, 0)


processes.ProcessTable._count_restarts = twice
runpy.run_module("amp_exporter", run_name="__main__", alter_sys=True)
"""


def test_soak_fails_on_an_exporter_that_counts_a_restart_twice(soak, tmp_path, monkeypatch,
                                                               capsys):
    wrapper = tmp_path / "double_counting.py"
    wrapper.write_text(DOUBLE_COUNTING)
    monkeypatch.setattr(soak.scrape, "EXPORTER", [sys.executable, str(wrapper)])
    # The script's first six changes hold one restart (a new PID).
    code = soak.main(["--scrapes", "200", "--changes", "6", "--no-baseline"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAILED scan service restarts counted once each: 1 performed, 2 counted" in out
    assert "FAILED every scrape agrees" in out
    assert 'cisco_amp_scan_service_restarts_total{} = 2, expected' in out


def test_a_fork_of_the_daemon_before_it_execs_is_no_restart(soak, tmp_path):
    """The scan service crashes; the daemon forks (the child is still `ampdaemon`, same exe,
    a few milliseconds old); the child execs ampscansvc. One scan-service restart; the
    daemon neither restarted nor had a second instance."""
    root = builder.build(tmp_path / "hosts", ["healthy-ebpf-btf"])["healthy-ebpf-btf"]
    (tmp_path / "scratch").mkdir()
    state = soak.HostState()
    disk = soak.Disk(root, tmp_path / "scratch", soak.tree(state))
    table = ProcessTable(HostPaths(str(root)))

    def to(**fields):
        nonlocal state
        state = replace(state, **fields)
        disk.apply(soak.tree(state))
        if state.fork_child:  # the kernel puts a fork in its parent's cgroups
            for procs in (root / "sys/fs/cgroup").rglob("cgroup.procs"):
                pids = procs.read_text().split()
                if str(builder.PID_DAEMON) in pids:
                    procs.write_text("".join(f"{pid}\n" for pid in
                                             [*pids, str(state.fork_child[0])]))
        table.begin_scrape()
        return table.snapshot()

    to()
    assert not to(scan_pid=None).running("ampscansvc")
    child = (50001, int(state.uptime * builder.HZ))
    forked = to(fork_child=child)
    assert [p.pid for p in forked.by_name("ampdaemon")] == [builder.PID_DAEMON]
    assert forked.restarts.get("ampdaemon", 0) == 0
    execd = to(fork_child=None, scan_pid=child[0], scan_start=child[1])
    assert [p.pid for p in execd.by_name("ampscansvc")] == [child[0]]
    assert execd.restarts == {"ampscansvc": 1}
    # A child that stays a second ampdaemon past the fork-to-exec grace is an instance.
    later = to(fork_child=(50002, child[1]), uptime=state.uptime + 5)
    assert len(later.by_name("ampdaemon")) == 2
