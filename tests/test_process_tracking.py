"""Following the connector's processes without listing proc once they are known: through
their own proc/PID/stat and the service's cgroup, with the listing as a bounded fallback.

Real processes in real cgroups. Each test has a PID and mount namespace of its own (so
no other process named like the connector on this machine, another test's or a bench's,
can be seen), whose /opt is a tmpfs holding the stand-ins (copies of sleep) and whose /
is also bound at HOST, as a container's /host. A driver runs there: it starts the
stand-ins in a cgroup made for the test on this machine (as systemd starts a unit's
processes in its cgroup) or outside it, and runs the exporter in-process with
--path.rootfs HOST, so every path goes through the host root; it answers with each
scrape's exposition and how many times it listed proc, by the process table's own
counter (processes.COUNTS).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, Scrape, parse_exposition

from amp_exporter.host import processes
from amp_exporter.host.paths import HostPaths
from amp_exporter.host.processes import cgroup_candidates, parse_cgroup_procs

CGROUP = Path("/sys/fs/cgroup")
# layout: (hierarchy on this machine the test's cgroup is made in, whether the namespace
# mounts cgroup2 over sys/fs/cgroup as a v2-only host has it, whether the exporter scrapes
# from a cgroup namespace of its own as in a container on a v2 host)
LAYOUTS = {
    "v2": ("unified", True, False),
    "hybrid": ("unified", False, False),
    "v1-systemd": ("systemd", False, False),
    "v1-pids": ("pids", False, False),
    "v2-cgroupns": ("unified", False, True),
}
BIN = "/opt/cisco/amp/bin"

# PID 1 of the test's namespaces: one JSON command a line in, one JSON answer a line out.
DRIVER = r"""
import ctypes, json, logging, os, shutil, subprocess, sys, time
from amp_exporter.cli import build_parser, exposition, make_exporter
from amp_exporter.host import processes

cgroup_procs, host, collectors, container = sys.argv[1:5]
collectors = collectors.split(",")
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWCGROUP = 0x02000000
own_ns = scrape_ns = None
if container:  # a cgroup namespace rooted at the container's cgroup, to scrape from
    own_ns = os.open("/proc/self/ns/cgroup", os.O_RDONLY)
    with open(container + "/cgroup.procs", "w") as f:
        f.write("0")
    if libc.unshare(CLONE_NEWCGROUP) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWCGROUP)")
    scrape_ns = os.open("/proc/self/ns/cgroup", os.O_RDONLY)
    libc.setns(own_ns, CLONE_NEWCGROUP)  # back: the stand-ins are started from here

def enter(ns):
    if ns is not None and libc.setns(ns, CLONE_NEWCGROUP) != 0:
        raise OSError(ctypes.get_errno(), "setns(CLONE_NEWCGROUP)")
records = []
handler = logging.Handler(logging.DEBUG)
handler.emit = records.append
logging.getLogger("amp_exporter").addHandler(handler)
logging.getLogger("amp_exporter").setLevel(logging.DEBUG)
children, churn, exporter = {}, [], None

def join_cgroup():
    with open(cgroup_procs, "w") as f:
        f.write("0")  # the writer itself: born there, before it runs the stand-in

def do(op, **cmd):
    global exporter
    if op == "start":
        exe = "/opt/cisco/amp/bin/" + cmd["name"]
        if not os.path.exists(exe):
            shutil.copy(cmd["program"], exe)
        p = subprocess.Popen([exe, *cmd["args"]], env=cmd["env"],
                             preexec_fn=join_cgroup if cmd["in_cgroup"] else None)
        children[p.pid] = p
        return {"pid": p.pid}
    if op == "stop":
        p = children.pop(cmd["pid"])
        p.kill()
        p.wait()
        return {}
    if op == "churn":  # short-lived processes, coming and going while we scrape
        churn.extend(subprocess.Popen(["sleep", "0.01"]) for _ in range(cmd["n"]))
        return {}
    if op == "reap":
        while churn:
            churn.pop().wait()
        return {}
    if op == "scrape":
        if exporter is None:
            exporter = make_exporter(build_parser().parse_args(
                ["textfile", "--output", "-", "--path.rootfs", host, "--ampcli.cache", "0",
                 "--collector.disable-defaults",
                 *(f"--collector.{name}" for name in collectors)]))
            exporter.shared.processes.full_listing_seconds = cmd["every"]
            # The period is what the test sets (listings here are cheap, but not free).
            exporter.shared.processes.listing_cpu_share = None
        enter(scrape_ns)
        if cmd.get("uid") is not None:
            os.seteuid(cmd["uid"])  # no effective capabilities either, until back to 0
        try:
            before = processes.COUNTS.proc_listings
            text = exposition(exporter).decode()
        finally:
            os.seteuid(0)
            enter(own_ns)
        table = exporter.shared.processes
        return {"text": text, "listed": processes.COUNTS.proc_listings - before,
                "reason": table.listing_reason, "cgroup": table._cgroup}
    if op == "every":
        exporter.shared.processes.full_listing_seconds = cmd["seconds"]
        return {}
    if op == "run":
        subprocess.run(cmd["argv"], check=True)
        return {}
    if op == "cgroup":  # proc/PID/cgroup as the exporter reads it
        enter(scrape_ns)
        try:
            with open(f"/proc/{cmd['pid']}/cgroup") as f:
                return {"text": f.read()}
        finally:
            enter(own_ns)
    if op == "members":
        with open(cgroup_procs) as f:
            return {"pids": sorted(int(w) for w in f.read().split())}
    if op == "exe":
        try:
            return {"exe": os.readlink(f"/proc/{cmd['pid']}/exe")}
        except OSError:
            return {"exe": None}
    if op == "log":
        return {"records": [{"level": r.levelname, "logger": r.name, "msg": r.getMessage(),
                             "why": getattr(r, "why", None)} for r in records]}
    raise ValueError(op)

print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    try:
        answer = do(**json.loads(line))
    except Exception as exc:
        answer = {"error": repr(exc)}
    print(json.dumps(answer), flush=True)
if exporter is not None:
    exporter.close()
"""

_serial = itertools.count()


def needs_cgroups(hierarchy: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make cgroups and namespaces")
    if not shutil.which("unshare"):
        pytest.skip("util-linux unshare is needed")
    if not (CGROUP / hierarchy / "cgroup.procs").exists():
        pytest.skip(f"no cgroup hierarchy at {CGROUP / hierarchy} on this machine")
    for stale in sorted((CGROUP / hierarchy).glob("amp-test-*-*")):  # a killed run's
        if not Path(f"/proc/{stale.name.split('-')[2]}").exists():
            with contextlib.suppress(OSError):
                stale.rmdir()


class Connector:
    """The stand-in connector, in a cgroup of its own on this machine, and the driver that
    starts its processes and scrapes them, in namespaces of their own."""

    def __init__(self, layout: str, every: float = processes.FULL_LISTING_SECONDS,
                 collectors: tuple[str, ...] = ("processes", "scan_service")) -> None:
        hierarchy, own_v2, cgroupns = LAYOUTS[layout]
        needs_cgroups(hierarchy)
        self.every = every
        self.last: dict = {}
        self.cgroup = CGROUP / hierarchy / f"amp-test-{os.getpid()}-{next(_serial)}"
        self.cgroup.mkdir()
        # The container's cgroup, beside the connector's: the exporter's cgroup namespace
        # is rooted there, and shows the connector's as /../amp-test-...
        self.container = Path(f"{self.cgroup}-container") if cgroupns else None
        if self.container:
            self.container.mkdir()
        # Where the namespace sees it: at the top when cgroup2 is all of sys/fs/cgroup.
        inside = CGROUP / self.cgroup.name if own_v2 else self.cgroup
        self.seen_at = inside.relative_to(CGROUP)
        self.host = f"/run/amp-test-host-{self.cgroup.name}"
        setup = [f"mount -t tmpfs -o mode=0755 amp-test /opt && mkdir -p {BIN}"]
        if own_v2:
            setup.append("mount -t cgroup2 cgroup2 /sys/fs/cgroup")
        setup.append(f"mkdir -p {self.host} && mount --rbind / {self.host}")
        self.driver = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
             "--kill-child", "--mount-proc", "sh", "-c",
             " && ".join(setup) + ' && exec "$0" -c "$1" "$2" "$3" "$4" "$5"',
             sys.executable, DRIVER, str(inside / "cgroup.procs"), self.host,
             ",".join(collectors), str(self.container or "")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
            env={**os.environ, "PYTHONPATH": str(REPO), "TZ": "UTC"})
        ready = self.driver.stdout.readline()
        assert json.loads(ready) == {"ready": 1}, ready

    def ask(self, op: str, **cmd) -> dict:
        self.driver.stdin.write(json.dumps({"op": op, **cmd}) + "\n")
        self.driver.stdin.flush()
        answer = json.loads(self.driver.stdout.readline())
        assert "error" not in answer, answer
        return answer

    def start(self, name: str, program: str = "/bin/sleep", *args: str,
              in_cgroup: bool = True) -> int:
        """NAME (a copy of PROGRAM, default sleep 600) started in the cgroup, or outside it
        (by hand, as it were); its PID in the namespace."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return self.ask("start", name=name, program=program, args=list(args or ("600",)),
                        env=env, in_cgroup=in_cgroup)["pid"]

    def stop(self, pid: int) -> None:
        self.ask("stop", pid=pid)

    def restart(self, pid: int, name: str) -> int:
        self.stop(pid)
        return self.start(name)

    def scrape(self, uid: int | None = None) -> tuple[Scrape, int]:
        """One scrape, and how many times it listed proc."""
        self.last = self.ask("scrape", every=self.every, uid=uid)
        return Scrape(parse_exposition(self.last["text"])), self.last["listed"]

    def close(self) -> None:
        self.driver.stdin.close()
        try:
            self.driver.wait(timeout=30)
        finally:
            self.driver.kill()
            self.driver.wait()
        for cgroup in filter(None, (self.cgroup, self.container)):
            deadline = time.monotonic() + 10
            while True:
                try:
                    cgroup.rmdir()
                    break
                except OSError:  # members still leaving
                    assert time.monotonic() < deadline, (cgroup / "cgroup.procs").read_text()
                    time.sleep(0.05)
        with contextlib.suppress(OSError):
            os.rmdir(self.host)


@contextlib.contextmanager
def connector(layout: str = "hybrid", **kwargs):
    c = Connector(layout, **kwargs)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(params=sorted(LAYOUTS))
def any_layout(request):
    """The stand-ins in a cgroup of each layout: v2 only, hybrid (this machine's), v1's
    name=systemd hierarchy, v1's pids controller, and v2 scraped from a cgroup namespace
    of the exporter's own."""
    with connector(request.param) as c:
        yield c


@pytest.fixture
def hybrid():
    with connector("hybrid") as c:
        yield c


def up(s: Scrape, name: str) -> float:
    return s.value("cisco_amp_process_up", process=name)


def instances(s: Scrape, name: str) -> float:
    return s.value("cisco_amp_process_instances", process=name)


def restarts(s: Scrape, name: str = "ampscansvc") -> float:
    return s.value("cisco_amp_process_restarts_total", process=name)


def healthy(s: Scrape) -> None:
    assert s.success() == {"processes": 1, "scan_service": 1}
    assert s.errors() == set()


# -- the cgroup answers ------------------------------------------------------------------

def test_known_processes_are_followed_without_listing_proc(any_layout):
    c = any_layout
    daemon = c.start("ampdaemon")
    c.start("ampscansvc")
    seen = c.ask("cgroup", pid=daemon)["text"]
    if c.container:
        assert f"0::/../{c.cgroup.name}\n" in seen  # from the namespace's root, beside it
    else:
        assert f"/{c.cgroup.name}\n" in seen
    s, n = c.scrape()
    assert n == 1  # the first collection lists proc
    healthy(s)
    assert (up(s, "ampdaemon"), up(s, "ampscansvc")) == (1, 1)
    for _ in range(5):
        again, n = c.scrape()
        assert n == 0, c.last["reason"]
        healthy(again)
        for name in ("ampdaemon", "ampscansvc"):
            assert instances(again, name) == 1
            assert again.value("cisco_amp_process_resident_memory_bytes", process=name) > 0
        assert again.value("cisco_amp_scan_service_restarts_total") == 0
    assert c.last["cgroup"] == f"{c.host}/sys/fs/cgroup/{c.seen_at}"


def test_a_restart_through_the_cgroup_is_counted_without_listing(any_layout):
    c = any_layout
    c.start("ampdaemon")
    scan = c.start("ampscansvc")
    c.scrape()
    scan = c.restart(scan, "ampscansvc")  # between two scrapes
    s, n = c.scrape()
    assert n == 0, c.last["reason"]
    assert s.value("cisco_amp_scan_service_restarts_total") == 1
    assert (restarts(s), restarts(s, "ampdaemon")) == (1, 0)
    assert instances(s, "ampscansvc") == 1
    # Two restarts between scrapes count once, as they always did (identities seen).
    scan = c.restart(c.restart(scan, "ampscansvc"), "ampscansvc")
    s, n = c.scrape()
    assert (n, s.value("cisco_amp_scan_service_restarts_total")) == (0, 2)
    # Stopped with no successor yet: the cgroup cannot tell where it went, proc is listed.
    c.stop(scan)
    s, n = c.scrape()
    assert n == 1 and c.last["reason"].startswith("ampscansvc (PID ")
    assert up(s, "ampscansvc") == 0
    s, n = c.scrape()  # nothing is lost this time: the cgroup is enough again
    assert n == 0
    c.start("ampscansvc")
    s, n = c.scrape()
    assert n == 0
    assert up(s, "ampscansvc") == 1
    assert s.value("cisco_amp_scan_service_restarts_total") == 3
    healthy(s)


def test_a_restarted_daemon_and_a_restarted_unit_are_found_in_the_cgroup(hybrid):
    c = hybrid
    daemon = c.start("ampdaemon")
    scan = c.start("ampscansvc")
    c.scrape()
    daemon = c.restart(daemon, "ampdaemon")
    s, n = c.scrape()
    assert n == 0
    assert (restarts(s, "ampdaemon"), restarts(s)) == (1, 0)
    # Every process of the unit replaced between two scrapes: no known process is left to
    # ask, the cgroup found last is (systemd keeps a unit's cgroup path).
    c.stop(daemon)
    c.stop(scan)
    c.start("ampdaemon")
    c.start("ampscansvc")
    s, n = c.scrape()
    assert n == 0, c.last["reason"]
    assert (restarts(s, "ampdaemon"), restarts(s)) == (2, 1)
    assert (instances(s, "ampdaemon"), instances(s, "ampscansvc")) == (1, 1)


DAEMON_THAT_FORKS = """
import os, time
r, w = os.pipe()
if os.fork() == 0:  # the daemon's child before exec: named ampdaemon, running its exe
    os.close(w)
    os.read(r, 1)
    os.execv("/opt/cisco/amp/bin/ampscansvc", ["ampscansvc", "600"])
os.close(r)
while not os.path.exists("/opt/cisco/amp/go"):
    time.sleep(0.01)
os.write(w, b"x")
time.sleep(600)
"""


def test_a_daemon_fork_before_exec_is_neither_an_instance_nor_a_restart(hybrid):
    """Between fork and exec the daemon's child is an `ampdaemon` in the daemon's cgroup:
    looked at again (it is young), not counted; once it runs ampscansvc, it is that."""
    c = hybrid
    c.stop(c.start("ampscansvc"))  # installs the binary the child will exec
    began = time.monotonic()
    daemon = c.start("ampdaemon", os.path.realpath(sys.executable), "-c", DAEMON_THAT_FORKS)
    deadline = time.monotonic() + 10
    while len(c.ask("members")["pids"]) < 2:
        assert time.monotonic() < deadline, "the stand-in daemon never forked"
        time.sleep(0.01)
    c.scrape()
    s, n = c.scrape()
    if time.monotonic() - began > processes._YOUNG_SECONDS:
        pytest.skip("this machine was too slow to scrape within the young window")
    assert n == 0
    assert instances(s, "ampdaemon") == 1
    assert up(s, "ampscansvc") == 0
    c.ask("run", argv=["touch", "/opt/cisco/amp/go"])
    child = next(pid for pid in c.ask("members")["pids"] if pid != daemon)
    deadline = time.monotonic() + 10
    while c.ask("exe", pid=child)["exe"] != f"{BIN}/ampscansvc":
        assert time.monotonic() < deadline, "the daemon's child never ran ampscansvc"
        time.sleep(0.01)
    s, n = c.scrape()
    assert n == 0
    assert up(s, "ampscansvc") == 1
    assert instances(s, "ampdaemon") == 1
    assert restarts(s, "ampdaemon") == 0


# -- the fallback listing ----------------------------------------------------------------

def test_a_process_outside_the_cgroup_is_found_by_the_periodic_listing():
    with connector(every=1.0) as c:
        c.start("ampdaemon")
        c.start("ampscansvc")
        c.scrape()
        first = time.monotonic()
        updater = c.start("ampupdater", in_cgroup=False)
        s, n = c.scrape()
        assert n == 0
        assert up(s, "ampupdater") is None  # not yet
        time.sleep(max(0.0, first + 1.1 - time.monotonic()))
        s, n = c.scrape()
        assert n == 1 and c.last["reason"] == "periodic (every 1s)"
        assert up(s, "ampupdater") == 1
        # Known now: followed through its own proc/PID/stat, though outside the cgroup.
        s, n = c.scrape()
        assert n == 0
        assert up(s, "ampupdater") == 1
        c.stop(updater)
        s, n = c.scrape()  # gone, and the cgroup names no successor: listed once
        assert n == 1
        assert up(s, "ampupdater") == 0
        healthy(s)


def test_the_periodic_listing_is_bounded_by_its_period(hybrid):
    c = hybrid
    c.start("ampdaemon")
    c.start("ampscansvc")
    c.scrape()
    began = time.monotonic()
    counts = [c.scrape()[1] for _ in range(30)]
    assert time.monotonic() - began < processes.FULL_LISTING_SECONDS
    assert counts == [0] * 30


def test_a_successor_outside_the_cgroup_is_found_by_listing_and_counted(hybrid):
    c = hybrid
    c.start("ampdaemon")
    scan = c.start("ampscansvc")
    c.scrape()
    c.stop(scan)
    c.start("ampscansvc", in_cgroup=False)
    s, n = c.scrape()
    assert n == 1
    assert up(s, "ampscansvc") == 1
    assert s.value("cisco_amp_scan_service_restarts_total") == 1
    healthy(s)


def listing_log(c: Connector) -> list[dict]:
    return [r for r in c.ask("log")["records"] if r["msg"].startswith("listing proc")]


def test_no_cgroup_to_read_falls_back_to_listing_and_says_so_in_debug_only(hybrid):
    """The host's tree without cgroup mounts (a container given /proc but not
    /sys/fs/cgroup, an example tree): listed every scrape, a restart still counts."""
    c = hybrid
    c.start("ampdaemon")
    scan = c.start("ampscansvc")
    c.ask("run", argv=["mount", "-t", "tmpfs", "none", f"{c.host}/sys/fs/cgroup"])
    for _ in range(3):
        s, n = c.scrape()
        assert n == 1
    scan = c.restart(scan, "ampscansvc")
    s, n = c.scrape()
    assert n == 1
    assert s.value("cisco_amp_scan_service_restarts_total") == 1
    assert up(s, "ampscansvc") == 1
    healthy(s)
    why = [r["why"] for r in listing_log(c)]
    assert why[0] == "first collection"
    assert why[1].endswith("cgroup.procs (No such file or directory)"), why
    assert len(why) == 2  # said once, not every scrape
    assert {r["level"] for r in c.ask("log")["records"]} == {"DEBUG"}


def test_an_unreadable_cgroup_falls_back_to_listing(hybrid):
    """The exporter as nobody, the service's cgroup.procs root-only: listed every scrape,
    a debug line says why, no error, and a restart still counts."""
    c = hybrid
    c.start("ampdaemon")
    scan = c.start("ampscansvc")
    (c.cgroup / "cgroup.procs").chmod(0o600)
    nobody = 65534
    results = [c.scrape(uid=nobody), c.scrape(uid=nobody)]
    scan = c.restart(scan, "ampscansvc")
    results.append(c.scrape(uid=nobody))
    assert [n for _, n in results] == [1, 1, 1]
    s = results[-1][0]
    healthy(s)
    assert up(s, "ampdaemon") == 1
    assert s.value("cisco_amp_scan_service_restarts_total") == 1
    assert s.value("cisco_amp_process_open_fds", process="ampdaemon") is None  # nobody's view
    why = [r["why"] for r in listing_log(c)]
    assert why[1].endswith("cgroup.procs (Permission denied)"), why
    assert {r["level"] for r in c.ask("log")["records"]} == {"DEBUG"}


# -- parsing -----------------------------------------------------------------------------

def test_where_each_cgroup_layout_is_looked_for():
    unit = "/system.slice/cisco-amp.service"
    # v2 only (RHEL 9, Debian 11+, Ubuntu 22.04) and hybrid (unified beside v1)
    assert cgroup_candidates(f"0::{unit}\n") == [("", unit[1:]), ("unified", unit[1:])]
    # v1 (RHEL 7): systemd's named hierarchy first, then pids, then cpu and cpuacct; not
    # the others (a machine slice's or a container's memory cgroup holds far more)
    rhel7 = (f"11:pids:{unit}\n10:cpuset:/\n9:memory:{unit}\n4:cpu,cpuacct:{unit}\n"
             f"1:name=systemd:{unit}\n")
    assert cgroup_candidates(rhel7) == [
        ("systemd", unit[1:]), ("pids", unit[1:]),
        ("cpu,cpuacct", unit[1:]), ("cpu", unit[1:]), ("cpuacct", unit[1:])]
    assert cgroup_candidates(f"3:cpuacct:{unit}\n2:name=other:{unit}\n") == [
        ("cpuacct", unit[1:])]
    # the root cgroup holds everything: no use
    assert cgroup_candidates("0::/\n1:name=systemd:/\n") == []
    # seen from a cgroup namespace of its own: looked for from the top of the hierarchy
    assert cgroup_candidates(f"0::/../..{unit}\n") == [("", unit[1:]), ("unified", unit[1:])]
    assert cgroup_candidates("0::/../..\n1:name=systemd:/a/../b\n") == []
    assert cgroup_candidates("garbage\n\n3:cpu\n") == []
    assert parse_cgroup_procs("12\n7\n12\n") == {7, 12}
    with pytest.raises(ValueError):
        parse_cgroup_procs("12\nx\n")


def test_the_periodic_listing_waits_longer_where_it_costs_more(hosts):
    """The listing's share of the CPU is capped: 300 s while a listing is cheap, up to an
    hour on a host where listing proc costs what 10,000 processes do."""
    table = processes.ProcessTable(HostPaths(str(hosts["healthy-ebpf-btf"])))
    table.snapshot()  # a first collection: the unit's cgroup, no listing
    assert table._listing_cpu == 0
    table.full_listing_seconds = 0
    table.begin_scrape()
    table.snapshot()
    assert table.listing_reason.startswith("periodic") and table._listing_cpu > 0
    table.full_listing_seconds = processes.FULL_LISTING_SECONDS
    for cpu, period in ((0.0012, 300), (0.010, 1500), (1.0, processes.MAX_LISTING_SECONDS)):
        table._listing_cpu = cpu
        assert table.listing_period() == pytest.approx(period)
    table.listing_cpu_share = None
    assert table.listing_period() == processes.FULL_LISTING_SECONDS
