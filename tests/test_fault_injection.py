"""Faults injected into the host under a running `amp-exporter serve`: each scrape is still
answered whole, the affected collector says it failed and why (success 0, an error count by
reason, a log line), the others carry on, nothing prints a traceback, and no ampcli is
left running."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_http import Server
from test_restarts import exporter_for, pid_of, scrape

# name -> (ampcli script body, or None to remove it; mode; expected error reason)
AMPCLI_FAULTS = {
    "binary garbage": ("head -c 65536 /dev/urandom\n", 0o755, "parse"),
    "10 MB of output": ("yes 'no status here' | head -c 10000000\n", 0o755, "parse"),
    "killed by a signal": ("kill -9 $$\n", 0o755, "exit_status"),
    # (an ampcli that exits non-zero after printing a status is read: ampcli.py)
    "exit status 3": ("echo 'Trying to connect...'; exit 3\n", 0o755, "exit_status"),
    "missing": (None, 0, "missing"),
    "not executable": ("echo 'Status: Connected'\n", 0o644, "permission"),
    "hangs": ("exec sleep 600\n", 0o755, "timeout"),
}


def stray(marker: str) -> list[str]:
    """Processes still running whose command line carries this test's marker path."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return out.split()


@pytest.mark.parametrize("fault", list(AMPCLI_FAULTS))
def test_ampcli_fault_gives_a_complete_scrape_and_a_reason(host_copy, fault):
    root = host_copy("healthy-ebpf-btf")
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    body, mode, reason = AMPCLI_FAULTS[fault]
    if body is None:
        ampcli.unlink()
    else:
        # A child left behind on every run too (not holding the output pipe, which would
        # be a timeout): it must die with ampcli's process group.
        # A copy of sleep inside the tree, so that stray() can find it by its path.
        child = root / "stray-child"
        shutil.copy(shutil.which("sleep") or "/bin/sleep", child)
        ampcli.write_text(f"#!/bin/sh\n{child} 600 >/dev/null 2>&1 &\n{body}")
        ampcli.chmod(mode)
    server = Server(root, "--ampcli.timeout", "1", "--ampcli.cache", "0")
    try:
        for _ in range(2):  # the second scrape runs ampcli again: counters add up
            start = time.monotonic()
            scrape = server.scrape()
            assert time.monotonic() - start < 3.0
            success = scrape.success()
            assert success["connector"] == 0, fault
            assert {k for k, v in success.items() if v != 1} == {"connector"}, success
            assert scrape.value("cisco_amp_connector_installed") == 1
            assert scrape.value("amp_exporter_ampcli_success") == 0
        assert scrape.value("amp_exporter_collector_errors_total", collector="connector",
                            reason=reason) == 2
        # Root causes that do not need ampcli are still checked.
        assert scrape.causes(5) and scrape.causes(7)
    finally:
        assert server.stop() == 0
    log = "".join(server.lines)
    assert f"reason={reason}" in log and "Traceback" not in log
    deadline = time.monotonic() + 3
    while stray(str(root)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stray(str(root)), f"{fault}: processes left running"


def test_host_tree_vanishing_under_a_running_exporter(host_copy, tmp_path):
    # The whole host root disappears between scrapes, then comes back.
    root = host_copy("healthy-ebpf-btf")
    server = Server(root)
    try:
        healthy = server.scrape()
        assert set(healthy.success().values()) == {1.0}
        moved = tmp_path / "away"
        shutil.move(str(root), moved)
        gone = server.scrape()  # answered, every collector saying what it could not do
        assert gone.value("cisco_amp_connector_installed") == 0
        assert set(gone.success()) == set(healthy.success())
        failing = {c for c, ok in gone.success().items() if not ok}
        assert failing and gone.errors(since=healthy) == {(c, "missing") for c in failing}
        shutil.move(str(moved), root)
        back = server.scrape()
        assert set(back.success().values()) == {1.0}
        assert back.value("cisco_amp_connector_installed") == 1
    finally:
        assert server.stop() == 0
    assert "Traceback" not in "".join(server.lines)


PROC_ENTRIES = ("cmdline", "comm", "cwd", "exe", "fd", "fdinfo", "stat", "statm", "status")


def test_processes_exiting_mid_collection(host_copy, tmp_path):
    """A process that exits while a scrape reads it: its proc directory is listed, then
    any of its files is gone (or all of them). Every such moment, for each connector
    process, gives a complete scrape with every collector succeeding, and no restart is
    counted for a process that only looked away for a moment."""
    root = host_copy("healthy-ebpf-btf")
    exporter = exporter_for(root)
    aside = tmp_path / "aside"
    moments = 0
    try:
        assert set(scrape(exporter).success().values()) == {1.0}
        for comm in ("ampdaemon", "ampscansvc", "ampupdater"):
            pid_dir = root / "proc" / str(pid_of(root, comm))
            for gone in (*PROC_ENTRIES, "everything"):
                shutil.copytree(pid_dir, aside, symlinks=True)
                if gone == "everything":  # listed, but empty: the kernel reaped it
                    for entry in PROC_ENTRIES:
                        _remove(pid_dir / entry)
                else:
                    _remove(pid_dir / gone)
                s = scrape(exporter)
                moments += 1
                assert set(s.success().values()) == {1.0}, (comm, gone, s.success())
                assert s.value("cisco_amp_scan_service_restarts_total") == 0, (comm, gone)
                shutil.rmtree(pid_dir)
                shutil.move(aside, pid_dir)
                back = scrape(exporter)
                assert back.value("cisco_amp_process_up", process=comm) == 1, (comm, gone)
        assert moments == 30
        assert scrape(exporter).value("cisco_amp_process_restarts_total",
                                      process="ampscansvc") == 0
    finally:
        exporter.close()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _host_entries(root: Path) -> list[Path]:
    """Every file, link and directory of a host tree, but not the per-process ones (the
    test above) nor the fd links."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if rel[0] == "proc" and len(rel) > 1 and rel[1].isdigit():
            continue
        out.append(path)
    return out


# A change to one host file, and the error reasons it may give (never 'internal').
CHANGES = {
    "vanishes": {"missing"},
    # as one caught mid-rewrite is; an empty ampcli cannot even start ('exit_status')
    "is emptied": {"parse", "exit_status"},
    # open() of a FIFO without a writer blocks forever: it must be refused, not waited on
    "becomes a FIFO": {"parse", "permission"},  # permission: ampcli cannot be run
    "becomes a directory": {"parse", "permission"},
    "becomes a symlink loop": {"parse", "missing", "exit_status"},  # ampcli cannot start
}


def scrape_within(exporter, seconds: float):
    result = []
    worker = threading.Thread(target=lambda: result.append(scrape(exporter)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"the scrape hung for {seconds} s"
    return result[0]


@pytest.mark.parametrize("change", list(CHANGES))
def test_any_host_file_changing_between_scrapes(host_copy, tmp_path, change):
    """Each file and directory of the example host in turn vanishes (or a file is emptied,
    or replaced by a FIFO), with the exporter already running: every scrape is complete and
    prompt, a collector that fails says why, and everything is back to healthy once the
    file is."""
    root = host_copy("healthy-ebpf-btf")
    exporter = exporter_for(root)
    aside = tmp_path / "aside"
    tried, failed = 0, set()
    try:
        last = scrape(exporter)
        assert set(last.success().values()) == {1.0}
        for path in _host_entries(root):
            if not (path.exists() or path.is_symlink()):
                continue  # under a directory already put back whole
            if change != "vanishes" and (path.is_symlink() or not path.is_file()):
                continue
            shutil.move(path, aside)
            if change == "is emptied":
                path.touch()
                shutil.copymode(aside, path)
            elif change == "becomes a FIFO":
                os.mkfifo(path, aside.stat().st_mode & 0o777)
            elif change == "becomes a directory":
                path.mkdir()
            elif change == "becomes a symlink loop":
                path.symlink_to(path.name)
            s = scrape_within(exporter, 10)
            tried += 1
            new = s.errors(since=last)
            assert {r for _, r in new} <= CHANGES[change], (path.relative_to(root), new)
            failing = {c for c, ok in s.success().items() if not ok}
            assert {c for c, _ in new} == failing, (path.relative_to(root), new, failing)
            failed |= failing
            last = s
            if change == "becomes a directory":
                path.rmdir()
            if change == "vanishes" or change == "becomes a directory":
                shutil.move(aside, path)
            else:
                os.replace(aside, path)
        after = scrape(exporter)
        assert set(after.success().values()) == {1.0}, after.success()
        print(f"{change}: {tried} files tried, collectors that said why: {sorted(failed)}")
        assert tried > 40 and failed  # some changes must be seen, or nothing was changed
    finally:
        exporter.close()
