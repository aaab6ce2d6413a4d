"""The exporter's own process_* metrics (serve only, from our own /proc/self) and the
running kernel's release (cisco_amp_kernel_info, from the host root)."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ERRORS, Scrape, builder, have, parse_exposition, scrape_text
from test_http import Server

from amp_exporter.host.self import SelfProcess, parse_boot_time, parse_stat
from amp_exporter.scrape import PROCESS_DESCS

PROCESS_NAMES = {d.exposed_name for d in PROCESS_DESCS}
KERNEL_ONLY = ("--collector.disable-defaults", "--collector.kernel")


@pytest.fixture
def started():
    servers: list[Server] = []

    def start(root: Path, *flags: str) -> Server:
        servers.append(Server(root, *flags))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def vm_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def soft_fd_limit(pid: int) -> float:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return float(line.split()[3])
    raise AssertionError(f"no fd limit for {pid}")


def test_serve_exports_its_own_process_metrics(hosts, started):
    began = time.time()
    s = started(hosts["healthy-ebpf-btf"])
    pid = s.proc.pid
    first = s.scrape()
    assert PROCESS_NAMES - set(first) == set()
    for name in PROCESS_NAMES:
        assert len(first[name]) == 1, name  # one series, no labels

    # Resident memory as the kernel tells the test, within 5 %.
    rss = first.value("process_resident_memory_bytes")
    assert abs(rss - vm_rss_bytes(pid)) <= 0.05 * vm_rss_bytes(pid), (rss, vm_rss_bytes(pid))
    assert first.value("process_virtual_memory_bytes") > rss
    # Started by this test, not at the example host's boot or this machine's.
    assert abs(first.value("process_start_time_seconds") - began) < 2
    # Its own descriptors, not those of a process of the host tree.
    assert abs(first.value("process_open_fds") - len(os.listdir(f"/proc/{pid}/fd"))) <= 2
    assert first.value("process_max_fds") == soft_fd_limit(pid)

    cpu = first.value("process_cpu_seconds_total")
    assert cpu > 0
    for _ in range(50):
        last = s.scrape()
    assert last.value("process_cpu_seconds_total") > cpu
    assert last.value("process_start_time_seconds") == first.value("process_start_time_seconds")


def test_process_metrics_describe_the_exporter_not_the_host_tree(host_copy, started):
    """A tree's proc/self is the tree's: never read, even when it is there."""
    root = host_copy("healthy-ebpf-btf")
    fake = root / "proc" / "self"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "stat").write_text("1 (fake) S 0 1 1 0 -1 0 0 0 0 0 99999 99999 0 0 20 0 1 0 "
                               "5 4096 1 18446744073709551615\n")
    (fake / "fd").mkdir(exist_ok=True)
    began = time.time()
    scrape = started(root).scrape()
    assert scrape.value("process_cpu_seconds_total") < 999
    assert scrape.value("process_virtual_memory_bytes") != 4096
    assert abs(scrape.value("process_start_time_seconds") - began) < 2


@pytest.mark.skipif(not have("promtool"), reason="promtool (Debian package prometheus) missing")
def test_promtool_accepts_the_process_metrics(hosts, started):
    status, body = started(hosts["healthy-ebpf-btf"]).get()
    assert status == 200 and "\nprocess_open_fds " in body
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr)


def test_textfile_has_no_process_metrics(hosts, scrape):
    """node_exporter serves the textfile beside its own process_*: ours would clash."""
    got = scrape(hosts["healthy-ebpf-btf"])
    assert "cisco_amp_kernel_info" in got  # a real exposition...
    assert not [name for name in got if name.startswith("process_")]  # ...without process_*


def test_parse_stat_counts_fields_after_the_last_parenthesis():
    line = ("4242 (a (b) c) R 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 "
            "123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3\n")
    stat = parse_stat(line)
    assert (stat.utime_ticks, stat.stime_ticks, stat.start_ticks) == (250, 50, 123456)
    assert (stat.vsize_bytes, stat.rss_pages) == (104857600, 2560)
    with pytest.raises(ValueError):
        parse_stat("4242 (short) R 1 2 3\n")
    assert parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n") == 1700000000
    with pytest.raises(ValueError):
        parse_boot_time("cpu  1 2 3\n")


def test_self_process_sample_from_a_proc_tree(tmp_path):
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\n")
    (tmp_path / "self" / "fd").mkdir(parents=True)
    for fd in ("0", "1", "2"):
        (tmp_path / "self" / "fd" / fd).touch()
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    (tmp_path / "self" / "stat").write_text(
        f"7 (amp exporter) S 1 7 7 0 -1 0 0 0 0 0 {3 * ticks} {ticks} 0 0 20 0 1 0 "
        f"{10 * ticks} 8192000 100 0\n")
    now = SelfProcess(str(tmp_path)).sample()
    assert now.cpu_seconds == 4.0
    assert now.start_time_seconds == 1700000010.0
    assert now.resident_bytes == 100 * page and now.virtual_bytes == 8192000
    assert now.open_fds == 3
    assert now.max_fds == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_kernel_info_is_each_example_hosts_release(hosts):
    def one(name: str) -> tuple[str, dict, str]:
        release = (hosts[name] / "proc/sys/kernel/osrelease").read_text().strip()
        got = parse_exposition(scrape_text(hosts[name], *KERNEL_ONLY))
        return name, got.get("cisco_amp_kernel_info", {}), release

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, sorted(builder.HOSTS)))
    assert len(results) == len(builder.HOSTS) > 1
    releases = set()
    for name, series, release in results:
        assert series == {(("release", release),): 1.0}, name
        releases.add(release)
    assert len(releases) > 1  # the hosts' own releases, not one from elsewhere


def test_kernel_info_absent_and_the_collector_failed_without_osrelease(host_copy, scrape):
    root = host_copy("healthy-ebpf-btf")
    (root / "proc/sys/kernel/osrelease").unlink()
    got: Scrape = scrape(root, *KERNEL_ONLY)
    assert "cisco_amp_kernel_info" not in got
    assert got.success() == {"kernel": 0.0}
    assert got.value(ERRORS, collector="kernel", reason="missing") == 1
