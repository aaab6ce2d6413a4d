"""The events collector (fault 18): real eBPF through the real fd hand-over, the procfs
fallback on a host tree, memory, and nothing left loaded after exit."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, Scrape
from test_http import Server
from test_restarts import scrape

from amp_exporter.cli import build_parser, make_exporter

needs_ebpf = pytest.mark.usefixtures("ebpf_ready")


def programs() -> list[dict]:
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out or "[]")


def map_ids_held_by(pid: int) -> set[int]:
    """IDs of the BPF maps a process holds, from its fdinfo."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf-map":
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    ids.add(int(re.search(r"^map_id:\s+(\d+)", f.read(), re.M).group(1)))
    return ids


def programs_using(map_ids: set[int]) -> set[int]:
    """IDs of the loaded programs that use any of these maps: a process's own programs,
    told apart from those of another test run sharing the kernel."""
    return {p["id"] for p in programs() if map_ids & set(p.get("map_ids", ()))}


def assert_unloaded(ours: set[int], message: str) -> None:
    """None of these programs is loaded, once the kernel has had up to 5 s to free them
    (it does so shortly after the last fd closes)."""
    deadline = time.monotonic() + 5
    while ours & {p["id"] for p in programs()} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ours & {p["id"] for p in programs()}, message


def wait_for_ebpf(server: Server, timeout: float = 60) -> None:
    """Until the served exporter counts events through eBPF (compiling takes seconds)."""
    deadline = time.monotonic() + timeout
    while server.scrape().value("amp_exporter_events_source", source="ebpf") != 1:
        assert time.monotonic() < deadline, "eBPF source never became active"
        time.sleep(0.2)


def exec_and_open(tmp_path: Path, execs: int, opens: int) -> None:
    """Real events the source must count: EXECS runs of /bin/true, OPENS opens of a file."""
    for _ in range(execs):
        subprocess.run(["/bin/true"], check=True)
    path = tmp_path / "f"
    path.write_text("x")
    for _ in range(opens):
        os.close(os.open(path, os.O_RDONLY))


def events_exporter(*flags: str):
    args = build_parser().parse_args(["serve", "--collector.disable-defaults",
                                      "--collector.events", *flags])
    exporter = make_exporter(args)
    return exporter, exporter.collectors[0]


def total(s: Scrape, event: str) -> float:
    return s.value("cisco_amp_host_events_total", event=event) or 0.0


@needs_ebpf
def test_real_ebpf_counts_execs_opens_and_connects(tmp_path):
    exporter, collector = events_exporter("--events.window", "0.5")
    try:
        collector.ebpf.wait(60)
        assert collector.ebpf.state == "active", collector.ebpf.reason
        # --events.python auto: this Python (the venv, seeing Debian's bcc) is tried first.
        assert build_parser().parse_args(["serve"]).events_python == "auto"
        assert collector.ebpf.python == sys.executable
        assert collector.ebpf.loader["bcc"], collector.ebpf.loader
        before = scrape(exporter)
        assert before.value("amp_exporter_events_source", source="ebpf") == 1
        execs, opens, connects = 1000, 2000, 200
        exec_and_open(tmp_path, execs, opens)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(connects)
            for _ in range(connects):
                with socket.create_connection(listener.getsockname()):
                    pass
        time.sleep(0.6)
        after = scrape(exporter)
        assert total(after, "process_exec") - total(before, "process_exec") >= execs
        assert total(after, "process_fork") - total(before, "process_fork") >= execs
        assert total(after, "file_open") - total(before, "file_open") >= opens
        assert total(after, "net_connect") - total(before, "net_connect") >= connects
        assert after.value("amp_exporter_events_tracepoints_attached") >= 15
        assert after.value("cisco_amp_event_pressure_ratio") > 0
        assert "amp_exporter_events_ebpf_unavailable" not in after
        top = after.get("cisco_amp_process_event_rate", {})
        assert 0 < len(top) <= 10
        ours = programs_using(map_ids_held_by(os.getpid()))
        assert len(ours) >= 15
    finally:
        exporter.close()
    assert_unloaded(ours, "programs left attached after close()")


@needs_ebpf
def test_sustained_pressure_is_a_fault_18_cause(host_copy):
    # A tiny capacity makes this machine's own activity "overload"; the cause needs it to
    # stay high for --events.pressure-for.
    exporter, collector = events_exporter("--events.window", "0.2", "--events.capacity", "1",
                                          "--events.pressure-for", "0.5")
    try:
        collector.ebpf.wait(60)
        assert collector.ebpf.state == "active", collector.ebpf.reason
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            subprocess.run(["/bin/true"])
            time.sleep(0.1)
            seen.append(scrape(exporter).causes(18).get("event_pressure_high"))
            since = collector._window.above_since
            if since is not None and time.monotonic() - since >= 1.0:
                break  # sustained for twice --events.pressure-for, scraped all along
        # Causes count only where the connector is installed: not on this machine.
        assert set(seen) == {0.0}
        assert collector._window.above_since is not None
        assert time.monotonic() - collector._window.above_since >= 0.5
    finally:
        exporter.close()


@needs_ebpf
def test_loading_happens_in_the_background_and_scrapes_never_wait():
    exporter, collector = events_exporter()
    try:
        start = time.monotonic()
        s = scrape(exporter)
        assert time.monotonic() - start < 0.5  # compiling takes longer than this
        assert s.value("amp_exporter_events_ebpf_unavailable", reason="starting") == 1
        assert s.value("amp_exporter_events_source", source="procfs") == 1
        collector.ebpf.wait(60)
        assert scrape(exporter).value("amp_exporter_events_source", source="ebpf") == 1
    finally:
        exporter.close()


def test_stopping_while_the_loader_runs_ends_it_quietly(tmp_path, caplog):
    """bcc compiles for seconds: an exporter stopped meanwhile ends its loader at once, and
    neither says "active" nor warns of a failure it caused itself."""
    from amp_exporter.host.events import EbpfEvents

    slow = tmp_path / "python"  # a loader that never answers
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    caplog.set_level("DEBUG", logger="amp_exporter")
    events = EbpfEvents(str(slow), timeout=60)
    deadline = time.monotonic() + 10
    while events._loader is None and time.monotonic() < deadline:
        time.sleep(0.01)
    loader = events._loader
    assert loader is not None and loader.poll() is None
    start = time.monotonic()
    events.close()
    events.wait(10)
    assert not events._thread.is_alive()
    assert time.monotonic() - start < 5  # not the loader's 60 s
    assert loader.poll() == -signal.SIGKILL
    assert (events.state, events.reason) == ("unavailable", "disabled")
    said = [r.getMessage() for r in caplog.records if r.name.startswith("amp_exporter")]
    assert not [m for m in said if "active" in m or "unavailable" in m], said


def test_without_bcc_the_fallback_says_why(tmp_path):
    if os.geteuid() != 0 or not os.path.isdir("/sys/kernel/tracing/events/sched") or \
            not os.path.exists(f"/lib/modules/{os.uname().release}/build"):
        pytest.skip("the loader stops earlier on this machine (no root, tracefs or headers)")
    # A Python without system site-packages cannot import Debian's bcc.
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    exporter, collector = events_exporter("--events.python", str(venv / "bin/python3"))
    try:
        collector.ebpf.wait(60)
        s = scrape(exporter)
        assert s.value("amp_exporter_events_ebpf_unavailable", reason="no_bcc") == 1
        assert s.value("amp_exporter_events_source", source="procfs") == 1
        assert s.value("cisco_amp_host_events_total", event="process_fork") > 0
    finally:
        exporter.close()


def test_a_refused_bpf_call_is_a_permission_that_names_what_is_missing(ebpf_ready):
    """Root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (setpriv's bounding set): the
    loader's own bpf() probe is refused, so the reason is `permission`, saying which
    privileges are needed, not bcc's "Failed to compile BPF module" after a good compile.
    (Under a seccomp filter that refuses bpf() to a holder of CAP_BPF it names the filter
    and the fix instead: tests/test_container.py.)"""
    if not shutil.which("setpriv"):
        pytest.skip("util-linux setpriv is needed")
    code = ("from amp_exporter.host import ebpf_loader as l\n"
            "try:\n    l.load()\nexcept l.LoaderError as e:\n    print(e.reason, e)")
    result = subprocess.run(
        ["setpriv", "--bounding-set=-all,+dac_read_search", "--inh-caps=-all",
         sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("permission the kernel refuses bpf() (Operation not "
                                    "permitted): needs CAP_BPF and CAP_PERFMON"), result.stdout


def test_procfs_fallback_on_a_host_tree(hosts):
    exporter, _ = events_exporter("--path.rootfs", str(hosts["healthy-ebpf-btf"]))
    try:
        s = scrape(exporter)
    finally:
        exporter.close()
    stat = (hosts["healthy-ebpf-btf"] / "proc/stat").read_text()
    forks = int(re.search(r"^processes (\d+)", stat, re.M).group(1))
    ctxt = int(re.search(r"^ctxt (\d+)", stat, re.M).group(1))
    assert s.value("cisco_amp_host_events_total", event="process_fork") == forks
    assert s.value("cisco_amp_host_context_switches_total") == ctxt
    assert s.value("amp_exporter_events_source", source="procfs") == 1
    assert s.value("amp_exporter_events_ebpf_unavailable", reason="not_live_host") == 1
    # No window has closed yet: pressure is unknown, so its cause is left out, not 0.
    assert s.causes(18) == {}
    assert s.success() == {"events": 1}


def test_procfs_rates_over_windows(host_copy):
    root = host_copy("healthy-ebpf-btf")
    exporter, _ = events_exporter("--path.rootfs", str(root), "--events.window", "0.2",
                                  "--events.capacity", "100")
    stat = root / "proc/stat"
    try:
        scrape(exporter)
        text = stat.read_text()
        forks = int(re.search(r"^processes (\d+)", text, re.M).group(1))
        time.sleep(0.25)
        stat.write_text(re.sub(r"^processes \d+", f"processes {forks + 50}", text, flags=re.M))
        ratio = scrape(exporter).value("cisco_amp_event_pressure_ratio")
        # 50 forks in ~0.25 s against 100/s: about 2, never 0
        assert 1.0 < ratio < 2.5
    finally:
        exporter.close()


def test_sustained_pressure_raises_and_clears_the_fault_18_cause(host_copy):
    # On a host tree with the connector installed, through the procfs source: forks from
    # proc/stat rise at ~1,600/s against a capacity of 100/s. The cause must wait for
    # --events.pressure-for, hold while the pressure does, and clear once it falls.
    root = host_copy("healthy-ebpf-btf")
    exporter, _ = events_exporter("--path.rootfs", str(root), "--events.window", "0.1",
                                  "--events.capacity", "100", "--events.pressure-for", "1.0")
    stat = root / "proc/stat"
    text = stat.read_text()
    forks = int(re.search(r"^processes (\d+)", text, re.M).group(1))

    def step(added: int) -> Scrape:
        nonlocal forks
        forks += added
        stat.write_text(re.sub(r"^processes \d+", f"processes {forks}", text, flags=re.M))
        time.sleep(0.12)
        return scrape(exporter)

    try:
        scrape(exporter)
        start = time.monotonic()  # pressure is first seen high at the end of this step
        first = step(200)  # 200 per step stays over capacity even if a step takes 2 s
        assert first.value("cisco_amp_event_pressure_ratio") > 1
        assert first.causes(18) == {"event_pressure_high": 0}  # not yet sustained
        while time.monotonic() - start < 0.6:
            assert step(200).causes(18) == {"event_pressure_high": 0}
        while time.monotonic() - start < 1.2:
            step(200)
        raised = [step(200).causes(18)["event_pressure_high"] for _ in range(3)]
        assert raised == [1, 1, 1], raised
        calm = [step(0) for _ in range(3)][-1]
        assert calm.value("cisco_amp_event_pressure_ratio") < 1
        assert calm.causes(18) == {"event_pressure_high": 0}
    finally:
        exporter.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


@needs_ebpf
def test_serving_rss_with_ebpf_within_5_mib_of_without(hosts):
    root = str(hosts["no-connector"])
    rss = {}
    for source in ("procfs", "ebpf"):
        server = Server(hosts["no-connector"], "--events.source", source,
                        "--path.procfs", "/proc", "--path.sysfs", "/sys")
        try:
            if source == "ebpf":
                wait_for_ebpf(server)
            for _ in range(20):
                server.scrape()
            rss[source] = rss_kib(server.proc.pid)
        finally:
            server.stop()
    print(f"serving RSS: procfs {rss['procfs']} KiB, ebpf {rss['ebpf']} KiB, root {root}")
    assert rss["ebpf"] - rss["procfs"] < 5 * 1024


@needs_ebpf
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_nothing_stays_loaded_after_the_exporter_exits(hosts, how):
    assert shutil.which("bpftool"), "bpftool (Debian package) is installed by scripts/setup"
    server = Server(hosts["no-connector"], "--path.procfs", "/proc", "--path.sysfs", "/sys")
    try:
        wait_for_ebpf(server)
        ours = programs_using(map_ids_held_by(server.proc.pid))
        assert len(ours) >= 15, "the exporter's programs, found through the maps it holds"
        server.proc.send_signal(how)
        server.proc.wait(timeout=10)
    finally:
        server.stop()
    assert_unloaded(ours, "programs left loaded after exit")


@needs_ebpf
def test_loader_dies_with_a_killed_exporter(hosts):
    # SIGKILL while the loader still compiles: without a parent-death signal the orphaned
    # loader finished, attached, then let bcc detach seconds later.
    server = subprocess.Popen(
        [sys.executable, "-m", "amp_exporter", "serve", "--path.rootfs",
         str(hosts["no-connector"]), "--path.procfs", "/proc", "--path.sysfs", "/sys",
         "--web.listen-address", "127.0.0.1:0", "--collector.disable-defaults",
         "--collector.events"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        loaders: list[str] = []
        while not loaders and time.monotonic() < deadline:
            loaders = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True,
                                     text=True).stdout.split()
            time.sleep(0.01)
        assert loaders, "the exporter never started its loader"
    finally:
        server.kill()
        server.wait()
    def running(pid: str) -> bool:  # a zombie waiting for init to reap it has ended
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rpartition(")")[2].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 2
    alive = loaders
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in loaders if running(pid)]
        time.sleep(0.01)
    assert not alive, "the loader outlived the exporter"
