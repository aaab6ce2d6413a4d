"""Live-host benchmark: amp-exporter on this machine's own /proc, /sys and sockets, against
node_exporter and process-exporter scraped in the same run.

    .venv/bin/python bench/live.py [--quick] [--rounds N] [--trials N] [--markdown FILE]
                                   [--loads 1k,10k,2k-sockets,10k-sockets] [--profile]

Needs root. The stand-in connector (bench/livehost.py) runs in a private mount namespace
(a tmpfs over /opt there only): ampdaemon and ampscansvc from /opt/cisco/amp/bin, holding
loopback TCP connections and a Unix socket, in a service cgroup of their own (below), and
an ampcli that works as the real one does: one compiled binary that connects to the stand-in
daemon's Unix socket, asks, and prints the real status the daemon answers (a run costs one
exec and a socket round trip, as on a real host, not a shell script's two execs and parse).
Every exporter runs in that namespace, as the README serves it (`amp-exporter serve`, i.e.
--path.rootfs=/, eBPF events where this machine allows them), on loopback.

Scraped as Prometheus 2.x scrapes, every target alike: one kept-alive HTTP/1.1 connection
per target (http.client; a new one when the server answers HTTP/1.0 or `Connection:
close`, or closed it while idle), `Accept-Encoding: gzip` and Prometheus's Accept header
(scrape.go's for its default scrape_protocols: OpenMetrics 1.0.0 q=0.5, 0.0.1 q=0.4, text
0.0.4 q=0.3, */* q=0.2), each body decompressed and parsed as its Content-Type says
(prometheus_client's parsers; a body that does not parse ends the run). So a server's CPU
includes gzip, as it does under Prometheus, and a server that closes after each answer
pays a connection (accept, a thread) per scrape, as it would there; how many connections
each target's rounds took is printed with each load.

Bytecode as an installed program has it: this environment sets PYTHONDONTWRITEBYTECODE=1,
which would make every start of the exporter compile all its modules from source (~25 ms
of CPU), which no installed copy does (pip compiles at install; the packages ship compiled).
So every Python started here (the exporter, its eBPF loader, `python -c pass`) runs with
PYTHONPYCACHEPREFIX in the run's temporary directory and without PYTHONDONTWRITEBYTECODE,
and one textfile run and one serve (until its eBPF loader is done) fill it before anything
is timed: start-up and textfile figures are those of a compiled install.

Loads, one after the other: 1,000 and 10,000 extra processes (forks of bench/livehold.c
that only pause, in a PID namespace of their own so that they all go with their parent),
then 2,000 and 10,000 extra TCP sockets (established loopback pairs, both ends held, 2,000
sockets per holder process), each older than 3 s before any server starts (the exporter
re-reads at every scrape a process it first saw under 2 s old, which a real host's
processes are not: 1,000 sleepers just made cost it ~8 ms a scrape for those 2 s). At
each load, started afresh and scraped in interleaved rounds (the order rotates each
round), in two groups so that only one eBPF-counting exporter runs at a time, as on a
real host (each one's probes cost every process a little): node_exporter, amp-exporter
with ampcli cached, process-exporter and amp-exporter with the processes collector alone;
then node_exporter and amp-exporter with ampcli on every scrape:

  node_exporter                      Debian's prometheus-node-exporter, default collectors
  amp-exporter, ampcli cached        --ampcli.cache 3600: the exporter's own work
  amp-exporter, ampcli every scrape  --ampcli.cache 0: a real 15 s scrape, ampcli included
  process-exporter                   Debian's prometheus-process-exporter, -procnames of the
                                     connector's processes only
  amp-exporter, processes alone      --collector.disable-defaults --collector.processes

CPU per scrape is each process's own utime+stime+cutime+cstime (/proc/PID/stat: all its
threads, dead ones too, and its children it reaped, e.g. ampcli) over the rounds, divided
by the rounds; for the amp-exporter rows with ampcli, also split into its own
(utime+stime) and its reaped children's (cutime+cstime: the ampcli runs), beside the total
the target checks, and, per load, the stand-in ampcli's own CPU per run (the children's CPU
over the status answers the stand-in daemon counted during those rounds, which should be
one a scrape). Clock ticks (10 ms), so each figure is printed with its resolution, one tick
over the rounds (±0.03 ms a scrape at the default 300 rounds, ±0.25 ms with --quick's 40;
300 rather than 200 because the exporter's ~2.5 ms scrape then reads to ~1 %, and four
loads still take ~4.5 min here). The exporter's periodic full listing of /proc (every
300 s while the cgroup answers, longer where a listing costs more) falls outside the
rounds (each server lives ~1 min): a real host adds at most ~0.1 ms of CPU per 15 s scrape
for it (amp_exporter.host.processes.LISTING_CPU_SHARE).
Latency is the client's, per scrape (request to body decompressed, not our parse); RSS is
VmRSS after the rounds. The share of the machine's CPUs that other work took during the
rounds is printed with each load: this is a shared machine, and the ratios stand up to
that noise better than the absolute figures. Then, started afresh `trials` times each,
interleaved: start to first answered scrape (amp-exporter as the README serves it,
node_exporter, process-exporter; a new connection each, as Prometheus's first scrape),
and the CPU of one `amp-exporter textfile` run (os.wait4's rusage of the child: it and the
children it reaped) against the interpreter alone (`python -c pass`, the floor of any run
of a Python program here).

Prints a table for each load with each figure beside its baseline and the ratio, then the
growth (10,000 vs 1,000 extra processes; 10,000 vs 2,000 extra sockets), and checks the
targets (the constants below). Exit 1 when one is missed (each is named), 2 when the
benchmark could not run, 130 when interrupted (everything it started is ended either way).
--profile then runs the ampcli-cached exporter at the last load with each request thread
under cProfile, and prints where its scrapes go.

A service cgroup, as on a real host: the exporter finds the connector's processes through
their service's cgroup (`cisco-amp.service`'s cgroup.procs) and lists /proc only as a
fallback (every 300 s, and at every scrape when the processes are in the root cgroup), and
its first collection (a start, every `textfile` run) looks at the unit's own path,
system.slice/cisco-amp.service, before it lists /proc. On a machine without systemd the
stand-ins would sit in the root cgroup, and the figures would be the fallback's, growing
with the host's processes. So livehost (ServiceCgroup) puts the stand-ins, before they
exec, in a cgroup in v2 and in v1 name=systemd where mounted (systemd keeps units in both
on a hybrid host): at the unit's own path, `system.slice/cisco-amp.service` at the
hierarchy's root, where there is no systemd and so no system.slice (then start-up and
textfile figures are a real host's, not a /proc listing's); else (systemd's system.slice
exists: never touched) `amp-bench-<pid>-<n>.cisco-amp.service` under the cgroup this
benchmark runs in, where a first collection lists /proc. It removes what it made once they
have exited; one left by a run killed outright is removed at the next start. That is
acceptable for a benchmark that otherwise writes only in its temporary directories: a
kernel object with no controller or limit, made only where no service manager owns the
name, gone with the run, like its temporary directories. The header says where the
stand-ins are; where no cgroup can be made (no permission, no cgroupfs) it says why, and
the figures are the fallback's.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import livehost  # noqa: E402
import scrape  # noqa: E402
from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text  # noqa: E402

from amp_exporter.host.processes import KNOWN_PROCESSES  # noqa: E402

_CONSOLE = REPO / ".venv" / "bin" / "amp-exporter"
# The README's `amp-exporter` (the installed console script), else the module.
AMP = [str(_CONSOLE)] if _CONSOLE.exists() else [sys.executable, "-m", "amp_exporter"]
NODE_EXPORTER = scrape.NODE_EXPORTER
PROCESS_EXPORTER = (shutil.which("prometheus-process-exporter")
                    or "/usr/bin/prometheus-process-exporter")
TICKS = os.sysconf("SC_CLK_TCK")
SOCKET_PAIRS_PER_HOLDER = 1000  # 2,000 sockets (and a listener) per holder process

LOADS = {  # key: (label, extra processes, extra TCP sockets)
    "1k": ("1,000 extra processes", 1000, 0),
    "10k": ("10,000 extra processes", 10000, 0),
    "2k-sockets": ("2,000 extra TCP sockets", 0, 2000),
    "10k-sockets": ("10,000 extra TCP sockets", 0, 10000),
}

# Targets (the product owner's; never weakened here).
CACHED_VS_NODE = 0.5      # live CPU per scrape, ampcli cached, < 0.5 x node_exporter's
EVERY_VS_NODE = 0.6       # ... with ampcli on every scrape, < 0.6 x
GROWTH = 0.20             # CPU per scrape unchanged +-20 %, 1k -> 10k processes, 2k -> 10k sockets
VS_PROCESS_EXPORTER = 5   # processes collector alone >= 5x cheaper at 10,000 extra processes
RSS_MIB = 25              # every collector on
TEXTFILE_CPU = 0.150      # s of CPU for one textfile run
FIRST_SCRAPE = 0.200      # s from start to the first answered scrape


# A scrape as Prometheus 2.x sends it (scrape/scrape.go: acceptHeader() of the default
# scrape_protocols, OpenMetrics 1.0.0, 0.0.1, then text 0.0.4; compression on).
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,"
              "application/openmetrics-text;version=0.0.1;q=0.4,"
              "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.55.1",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


class Refused(ConnectionError):
    """An answer other than 200 (an OSError, as urllib's was: starting servers are polled
    until they answer 200)."""


def check_body(name: str, body: bytes, content_type: str) -> None:
    """The body parses as its Content-Type says, as Prometheus parses every scrape: the
    figures are those of answers Prometheus would take."""
    media = content_type.split(";")[0].strip()
    parse = {"application/openmetrics-text": parse_openmetrics,
             "text/plain": parse_text}.get(media)
    try:
        if parse is None:
            raise ValueError(f"Content-Type {content_type!r}")
        samples = sum(len(family.samples) for family in parse(body.decode()))
        if not samples:
            raise ValueError("no samples")
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise RuntimeError(f"{name}: its scrape does not parse ({content_type}): "
                           f"{exc}") from None


class Server(scrape.Target):
    """A server started in the connector's namespace, scraped as Prometheus scrapes (see
    the module's docstring: one kept-alive connection, gzip, Prometheus's Accept header;
    every body decompressed and parsed). CPU includes reaped children."""

    poll_seconds = 0.001
    conn: Optional[http.client.HTTPConnection] = None
    connections = 0     # made over its life
    answered_at = 0.0   # monotonic time of its first answer
    version = ""        # of its last answer: 'HTTP/1.1', or 'HTTP/1.0 or close'

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Start to first answer, without our parsing of it (Target times get() whole).
        self.first_scrape = self.answered_at - self.started

    def _fetch(self) -> tuple[bytes, str]:
        """(the body of one GET /metrics, decompressed; its Content-Type), on the kept
        connection, or a new one when there is none."""
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            reused = self.conn.sock is not None
            if not reused:
                self.connections += 1  # request() connects
            try:
                self.conn.request("GET", "/metrics", headers=SCRAPE_HEADERS)
                response = self.conn.getresponse()
                raw = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and attempt == 1:
                    continue  # closed while idle: again on a new one, as Go's client does
                if isinstance(exc, OSError):
                    raise
                raise ConnectionError(f"{self.name}: {exc!r}") from exc
        if not self.answered_at:
            self.answered_at = time.monotonic()
        # HTTP/1.0 (unless keep-alive), or Connection: close: http.client has closed the
        # socket, and the next request() connects again.
        self.version = "HTTP/1.0 or close" if response.will_close else "HTTP/1.1"
        if response.status != 200:
            raise Refused(f"{self.name}: {response.status} {response.reason}")
        if response.getheader("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        return raw, response.getheader("Content-Type", "")

    def get(self) -> bytes:
        body, content_type = self._fetch()
        check_body(self.name, body, content_type)
        return body

    def timed(self) -> float:
        """The client's wall time of one scrape: request to body decompressed (not the
        parse, which follows)."""
        start = time.perf_counter()
        body, content_type = self._fetch()
        took = time.perf_counter() - start
        check_body(self.name, body, content_type)
        return took

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def cpu_seconds(self) -> float:
        return sum(self.cpu_parts())

    def cpu_parts(self) -> tuple[float, float]:
        """(its own CPU seconds: utime+stime, its reaped children's: cutime+cstime)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        # utime stime cutime cstime (fields 14-17 of proc(5))
        ticks = [int(f) for f in fields[11:15]]
        return (ticks[0] + ticks[1]) / TICKS, (ticks[2] + ticks[3]) / TICKS

    def children(self) -> list[int]:
        return livehost.children_of(self.proc.pid)

    def settle(self, timeout: float = 30) -> None:
        """Until it has no child left (eBPF loader, ampcli): their CPU lands when reaped."""
        deadline = time.monotonic() + timeout
        while self.children() and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self.close()  # ours first: a server waits for open connections at SIGTERM
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Stats:
    cpu: float = 0.0            # s per scrape: own + children
    own: float = 0.0            # s per scrape: utime+stime
    children: float = 0.0       # s per scrape: cutime+cstime (reaped children: ampcli)
    ampcli_runs: int = 0        # status answers the stand-in daemon gave during the rounds
    p50: float = 0.0
    p99: float = 0.0
    rss: float = 0.0            # MiB
    first: list = field(default_factory=list)   # s, start to first scrape, per trial
    connections: int = 0        # made during the rounds (1: kept alive throughout)
    version: str = ""           # of its last answer (Server.version)


@dataclass
class Result:
    key: str
    label: str
    processes: int = 0          # in /proc during the rounds
    tcp: int = 0                # TCP sockets in use (proc/net/sockstat)
    rounds: int = 0
    stats: dict = field(default_factory=dict)   # target -> Stats
    textfile: list = field(default_factory=list)  # s of CPU per run
    python: list = field(default_factory=list)
    events: str = ""
    rows: list = field(default_factory=list)  # the table, targets checked
    others: tuple = (0.0, 0.0)  # share of the CPUs others used, per group of rounds


NODE, CACHED, EVERY, PE, PROCS = ("node_exporter", "amp, ampcli cached",
                                  "amp, ampcli every scrape", "process-exporter",
                                  "amp, processes alone")
NODE_B = "node_exporter, beside ampcli every scrape"
START_AMP = "amp-exporter serve"
OTHERS = "others"  # Stats.cpu: the share of the machine's CPUs others used during rounds
WARM_UP = 10  # scrapes of each target before the rounds
# The exporter reads a process it first saw younger than 2 s again at every refresh until
# it is older (it may be between fork and exec: processes._YOUNG_SECONDS), so 1,000 sleepers
# just made cost it ~8 ms a scrape for 2 s. A real host's processes are older than that:
# the servers start once the load is this old.
LOAD_AGE = 3.0
# How each is served (address: 127.0.0.1:PORT). Both eBPF exporters (CACHED, EVERY) never
# run at once: on a real host one does, and each one's probes cost every other process
# here a little (+0.3-0.5 ms a node_exporter scrape each, measured), so the rounds run in
# two groups, each with node_exporter: CACHED with PE and PROCS, then EVERY.
ARGV = {
    NODE: lambda a: [NODE_EXPORTER, f"--web.listen-address={a}"],
    CACHED: lambda a: [*AMP, "serve", "--ampcli.cache", "3600", "--web.listen-address", a],
    EVERY: lambda a: [*AMP, "serve", "--ampcli.cache", "0", "--web.listen-address", a],
    PE: lambda a: [PROCESS_EXPORTER, "-procnames", ",".join(KNOWN_PROCESSES),
                   "-web.listen-address", a],
    PROCS: lambda a: [*AMP, "serve", "--collector.disable-defaults", "--collector.processes",
                      "--web.listen-address", a],
    START_AMP: lambda a: [*AMP, "serve", "--web.listen-address", a],  # the README's
}


class Loads:
    """The extra processes and sockets, held by helper processes that exit when their
    stdin closes (or their parent dies)."""

    def __init__(self, helper: Path) -> None:
        self.helper = helper
        self.sleepers: list[subprocess.Popen] = []
        self.sockets: list[subprocess.Popen] = []
        self.sleepers_n = 0
        self.started_at = -float("inf")  # monotonic time the last sleepers were ready

    def _start(self, argv: list[str]) -> subprocess.Popen:
        p = subprocess.Popen(livehost.die_with_parent(argv), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        if p.stdout.readline() != "ready\n":
            p.wait(10)
            raise RuntimeError(f"load helper {argv[-2:]} did not start")
        return p

    def processes(self, n: int) -> None:
        have = self.sleepers_n
        if n < have or n == 0:
            self._end(self.sleepers)
            have = 0
        if n > have:
            # A PID namespace of their own: when its first process goes, the kernel ends
            # and reaps every sleeper (this machine's PID 1 reaps no orphans).
            self.sleepers.append(self._start(
                ["unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--",
                 str(self.helper), "sleepers", str(n - have)]))
            self.started_at = time.monotonic()
        self.sleepers_n = n

    def tcp(self, n: int) -> None:
        want = -(-n // (2 * SOCKET_PAIRS_PER_HOLDER))
        if want < len(self.sockets):
            self._end(self.sockets)
        while len(self.sockets) < want:
            self.sockets.append(self._start([str(self.helper), "sockets",
                                             str(SOCKET_PAIRS_PER_HOLDER)]))

    @staticmethod
    def _end(procs: list[subprocess.Popen]) -> None:
        for p in procs:
            with contextlib.suppress(OSError):
                p.stdin.close()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        procs.clear()

    def close(self) -> None:
        self._end(self.sleepers)
        self._end(self.sockets)


def process_count() -> int:
    return sum(1 for e in os.listdir("/proc") if e.isdigit())


def tcp_in_use() -> int:
    text = Path("/proc/net/sockstat").read_text() + Path("/proc/net/sockstat6").read_text()
    return sum(int(m) for m in re.findall(r"^TCP6?: inuse (\d+)", text, re.MULTILINE))


def foreign_connector_processes(ours: set[int]) -> list[int]:
    """Connector-named processes not ours (a test elsewhere on this machine?): the
    exporters would count them too."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in ours:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() in KNOWN_PROCESSES:
                    found.append(int(entry))
    return found


def cgroups(pid: int) -> list[str]:
    """Where pid is in the hierarchies the exporter may follow (v2, name=systemd)."""
    found = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" or controllers == "name=systemd":
            found.append(f"{'v2' if hierarchy == '0' else controllers} {path}")
    return sorted(found, reverse=True)  # v2 first, the exporter's first choice


def cgroup_line(ns: livehost.ConnectorNamespace) -> str:
    """Which cgroup the stand-ins are in, and so which path the exporter takes."""
    where = {name: cgroups(pid) for name, pid in ns.stand_ins.items()}
    found = ", ".join(where["ampdaemon"])
    made = {f"{h} {path}" for h, path in ns.cgroup.paths.items()} if ns.cgroup else set()
    if made and all(set(w) == made for w in where.values()):
        unit = f"/{livehost.UNIT_SLICE}/{livehost.UNIT}"
        at_unit = [h for h, path in ns.cgroup.paths.items() if path == unit]
        if len(at_unit) == len(made):
            return (f"stand-ins at the unit's own cgroup path, made for this run (no systemd "
                    f"here) and removed after: {found} (the path the exporter looks at "
                    "first, before listing /proc, then follows at every scrape, as on a "
                    "systemd host)")
        others = ", ".join(h for h in ns.cgroup.paths if h not in at_unit)
        first = (f"at the unit's path in {', '.join(at_unit)}, which a first collection looks "
                 "at" if at_unit else "so a first collection finds them by listing /proc")
        return (f"stand-ins in a service cgroup of their own, made for this run and removed "
                f"after: {found} (not at the unit's own path in {others}, whose "
                f"system.slice exists; {first}; the exporter follows its cgroup.procs at "
                "every scrape)")
    why = ns.cgroup.why if ns.cgroup and ns.cgroup.why else "not made"
    return (f"stand-ins in cgroup {found}: not a service cgroup of their own ({why}), so "
            "the exporter lists /proc at every scrape (its fallback), unlike a systemd host")


def value(body: bytes, name: str, **labels: str) -> Optional[float]:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(name + "{" if labels else name + " "):
            head, _, val = line.rpartition(" ")
            got = head[len(name):].strip("{}")
            if ",".join(sorted(got.split(","))) == want or not labels:
                return float(val)
    return None


def events_source(t: Server, timeout: float = 30) -> str:
    """Once the events source is decided: 'ebpf', or 'procfs (reason)'."""
    deadline = time.monotonic() + timeout
    while True:
        body = t.get()
        if value(body, "amp_exporter_events_source", source="ebpf") == 1:
            return "ebpf"
        m = re.search(rb'amp_exporter_events_ebpf_unavailable\{reason="(\w+)"\} 1', body)
        if (m and m.group(1) != b"starting") or time.monotonic() > deadline:
            return f"procfs ({m.group(1).decode() if m else 'unknown'})"
        time.sleep(0.1)


def sanity(servers: dict[str, Server], ns: livehost.ConnectorNamespace) -> list[str]:
    """What must hold for the figures to mean anything: each exporter sees the stand-in
    connector, and only it."""
    problems = []
    for name in (CACHED, EVERY):
        if name not in servers:
            continue
        body = servers[name].get()
        if value(body, "cisco_amp_connector_state", state="answering") != 1:
            problems.append(f"{name}: connector not answering")
        for proc in ns.stand_ins:
            if value(body, "cisco_amp_process_up", process=proc) != 1:
                problems.append(f"{name}: {proc} not up")
        established = value(body, "cisco_amp_tcp_connections", process="ampdaemon",
                            state="established")
        if established != 2 * livehost.DAEMON_TCP:
            problems.append(f"{name}: ampdaemon's established connections {established}, "
                            f"expected {2 * livehost.DAEMON_TCP}")
        failed = re.findall(rb'amp_exporter_scrape_collector_success\{collector="(\w+)"\} 0',
                            body)
        if failed:
            problems.append(f"{name}: collectors failing: {b', '.join(failed).decode()}")
    if PROCS in servers and value(servers[PROCS].get(), "cisco_amp_process_up",
                                  process="ampdaemon") != 1:
        problems.append(f"{PROCS}: ampdaemon not up")
    if PE in servers:
        pe = servers[PE].get()
        for proc in ns.stand_ins:
            seen = value(pe, "namedprocess_namegroup_num_procs", groupname=proc)
            if seen != 1:
                problems.append(f"{PE}: {proc} seen {seen} times")
    return problems


def start(ns: livehost.ConnectorNamespace, name: str, work: Path) -> Server:
    port = scrape.free_port()
    log = work / (re.sub(r"\W+", "_", name) + ".log")
    return Server(name, ns.wrap(ARGV[name](f"127.0.0.1:{port}")), port, log=log)


def stop_all(servers: dict[str, Server]) -> None:
    for s in servers.values():
        s.stop()


def wait_foreign_gone(ns: livehost.ConnectorNamespace, timeout: float = 120) -> None:
    """Processes named like the connector's that are not ours (a test elsewhere on this
    machine running its own stand-ins) would be counted by every exporter: wait them out."""
    deadline = time.monotonic() + timeout
    said = False
    while foreign_connector_processes(set(ns.stand_ins.values())):
        if time.monotonic() > deadline:
            raise RuntimeError("connector-named processes not ours stayed on this machine: "
                               f"{foreign_connector_processes(set(ns.stand_ins.values()))}")
        if not said:
            print("  (waiting for connector-named processes not ours to go: "
                  f"{foreign_connector_processes(set(ns.stand_ins.values()))})", flush=True)
            said = True
        time.sleep(1)


def rounds_of(servers: dict[str, Server], rounds: int,
              ns: livehost.ConnectorNamespace, attempts: int = 4) -> dict[str, Stats]:
    """`rounds` scrapes of each, interleaved; again when a connector-named process not ours
    was there before (the exporters' view of it may lag) or appeared meanwhile."""
    problems: list[str] = []
    for _ in range(attempts):
        wait_foreign_gone(ns)
        problems = sanity(servers, ns)
        if problems:
            time.sleep(1)  # the exporters' view of a process that just went may lag
            problems = sanity(servers, ns)
            if problems and not foreign_connector_processes(set(ns.stand_ins.values())):
                raise RuntimeError("; ".join(problems))
            if problems:
                continue
        stats = _rounds(servers, rounds, ns.ampcli_runs)
        if not foreign_connector_processes(set(ns.stand_ins.values())):
            return stats
        print("  (a connector-named process not ours appeared during the rounds: again)",
              flush=True)
    raise RuntimeError("connector-named processes not ours kept appearing: "
                       + ("; ".join(problems) or "during every attempt"))


def machine_busy() -> float:
    """CPU seconds this machine has spent busy since boot (proc/stat, all CPUs)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS


def _rounds(servers: dict[str, Server], rounds: int,
            ampcli_runs: Callable[[], int]) -> dict[str, Stats]:
    names = list(servers)
    for s in servers.values():
        for _ in range(WARM_UP):  # the first scrapes read every new PID
            s.get()
        s.settle()
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu0 = {n: servers[n].cpu_parts() for n in names}
    runs0 = ampcli_runs()
    # (a connection kept alive from the warm-up counts once, as one made)
    connections0 = {n: servers[n].connections - (servers[n].conn is not None
                                                 and servers[n].conn.sock is not None)
                    for n in names}
    busy0, self0, wall0 = machine_busy(), sum(os.times()[:2]), time.monotonic()
    for i in range(rounds):
        k = i % len(names)
        for n in names[k:] + names[:k]:  # rotate: no target always scrapes after another
            times[n].append(servers[n].timed())
    for s in servers.values():
        s.settle(5)
    runs = ampcli_runs() - runs0
    cpu1 = {n: servers[n].cpu_parts() for n in names}
    out = {n: Stats(cpu=(sum(cpu1[n]) - sum(cpu0[n])) / rounds,
                    own=(cpu1[n][0] - cpu0[n][0]) / rounds,
                    children=(cpu1[n][1] - cpu0[n][1]) / rounds, ampcli_runs=runs,
                    p50=statistics.median(times[n]), p99=scrape.pct(times[n], 0.99),
                    rss=servers[n].rss_mib(),
                    connections=servers[n].connections - connections0[n],
                    version=servers[n].version) for n in names}
    # What else kept this machine busy meanwhile (other users' work, this client aside):
    # a share of its CPUs. The ratios hold up to noise; the absolute figures do not.
    others = (machine_busy() - busy0 - (sum(os.times()[:2]) - self0)
              - sum(st.cpu for st in out.values()) * rounds)
    out[OTHERS] = Stats(cpu=max(0.0, others) / ((time.monotonic() - wall0) * os.cpu_count()))
    return out


def first_scrapes(ns: livehost.ConnectorNamespace, trials: int, work: Path,
                  stats: dict[str, Stats]) -> None:
    """Start to first answered scrape, `trials` fresh starts each, interleaved."""
    for _ in range(trials):
        for name in (START_AMP, NODE, PE):
            s = start(ns, name, work)
            stats.setdefault(name, Stats()).first.append(s.first_scrape)
            if name == START_AMP:
                # Stopped before its eBPF loader is done, the exporter leaves it to finish
                # alone (and its CPU to land on the next start): let it finish.
                events_source(s)
                s.settle()
            s.stop()


def rusage_cpu(argv: list[str]) -> float:
    """CPU seconds of one run of argv (it and the children it reaped), from wait4."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if p.returncode != 0:
        raise RuntimeError(f"{argv[-4:]} exited {p.returncode}: {err[-500:]}")
    return usage.ru_utime + usage.ru_stime


def textfile_runs(ns: livehost.ConnectorNamespace, trials: int, work: Path,
                  result: Result) -> None:
    out = work / "textfile" / "amp-exporter.prom"
    out.parent.mkdir(exist_ok=True)
    for _ in range(trials):
        result.textfile.append(rusage_cpu(ns.wrap([*AMP, "textfile", "--output", str(out)])))
        result.python.append(rusage_cpu(ns.wrap([sys.executable, "-c", "pass"])))
    if b"cisco_amp_connector_state" not in out.read_bytes():
        raise RuntimeError("the textfile run wrote no connector state")


@contextlib.contextmanager
def compiled_bytecode(cache: Path):
    """Every Python we start reads and writes bytecode in `cache`, as an installed copy
    has it compiled (this environment's PYTHONDONTWRITEBYTECODE would make each start
    compile every module from source)."""
    saved = {k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def warm_bytecode(ns: livehost.ConnectorNamespace, work: Path, cache: Path) -> int:
    """Compile what every timed start will read: one textfile run, `python -c pass`, and a
    serve until its eBPF loader is done. The .pyc files in `cache`."""
    out = work / "textfile" / "amp-exporter.prom"
    out.parent.mkdir(exist_ok=True)
    rusage_cpu(ns.wrap([*AMP, "textfile", "--output", str(out)]))
    rusage_cpu(ns.wrap([sys.executable, "-c", "pass"]))
    s = start(ns, START_AMP, work)
    try:
        events_source(s)
        s.settle()
    finally:
        s.stop()
    return sum(1 for _ in cache.rglob("*.pyc"))


def measure(key: str, ns: livehost.ConnectorNamespace, loads: Loads, rounds: int,
            trials: int, work: Path) -> Result:
    label, processes, sockets = LOADS[key]
    loads.processes(processes)
    loads.tcp(sockets)
    time.sleep(max(0.0, loads.started_at + LOAD_AGE - time.monotonic()))
    result = Result(key, label, rounds=rounds)
    servers: dict[str, Server] = {}
    try:
        for name in (NODE, CACHED, PE, PROCS):
            servers[name] = start(ns, name, work)
        result.events = events_source(servers[CACHED])
        result.processes, result.tcp = process_count(), tcp_in_use()
        result.stats = rounds_of(servers, rounds, ns)
        servers.pop(CACHED).stop()
        servers.pop(PE).stop()
        servers.pop(PROCS).stop()
        servers[EVERY] = start(ns, EVERY, work)
        events_source(servers[EVERY])
        group = rounds_of(servers, rounds, ns)
        result.stats[NODE_B], result.stats[EVERY] = group[NODE], group[EVERY]
        result.others = (result.stats.pop(OTHERS).cpu, group[OTHERS].cpu)
    finally:
        stop_all(servers)
    first_scrapes(ns, trials, work, result.stats)
    textfile_runs(ns, trials, work, result)
    return result


# -- the report ---------------------------------------------------------------------------

@dataclass
class Row:
    figure: str
    baseline: str   # what it is set beside
    ours: str
    base: str
    ratio: str
    target: str = ""
    met: Optional[bool] = None


MISSED: list[str] = []


def ms(s: float) -> str:
    return f"{s * 1e3:.2f} ms"


def cpu_ms(s: float, rounds: int) -> str:
    """CPU per scrape, with the resolution of clock ticks over `rounds` scrapes."""
    return f"{s * 1e3:.2f} ±{1e3 / TICKS / rounds:.2f} ms"


def p50_99(st: Stats) -> str:
    return f"{st.p50 * 1e3:.2f} / {st.p99 * 1e3:.2f} ms"


def rows_for(r: Result) -> list[Row]:
    """The table of one load, its targets checked (a missed one goes to MISSED)."""
    s = r.stats
    node, cached, every, pe, procs = s[NODE], s[CACHED], s[EVERY], s[PE], s[PROCS]
    node_b = s[NODE_B]
    rows = []

    def check(row: Row, met: bool) -> Row:
        row.met = met
        if not met:
            MISSED.append(f"{row.figure} ({r.label}): {row.ours} vs {row.baseline} "
                          f"{row.base}, ratio {row.ratio}, target {row.target}")
        return row

    n = r.rounds
    ratio = cached.cpu / node.cpu
    rows.append(check(Row("CPU per scrape, ampcli cached", NODE, cpu_ms(cached.cpu, n),
                          cpu_ms(node.cpu, n), f"{ratio:.2f}", f"< {CACHED_VS_NODE}"),
                      ratio < CACHED_VS_NODE))
    rows.append(split_row("ampcli cached", cached, node))
    ratio = every.cpu / node_b.cpu
    rows.append(check(Row("CPU per scrape, ampcli every scrape", NODE, cpu_ms(every.cpu, n),
                          cpu_ms(node_b.cpu, n), f"{ratio:.2f}", f"< {EVERY_VS_NODE}"),
                      ratio < EVERY_VS_NODE))
    rows.append(split_row("ampcli every scrape", every, node_b))
    for name, st, base in (("ampcli cached", cached, node),
                           ("ampcli every scrape", every, node_b)):
        rows.append(Row(f"latency p50 / p99, {name}", NODE, p50_99(st), p50_99(base),
                        f"{st.p50 / base.p50:.2f} / {st.p99 / base.p99:.2f}"))
    ratio = procs.cpu / pe.cpu
    row = Row("CPU per scrape, processes collector alone", PE, cpu_ms(procs.cpu, n),
              cpu_ms(pe.cpu, n),
              f"{ratio:.2f}" + (f" ({pe.cpu / procs.cpu:.1f}x cheaper)" if procs.cpu else ""))
    if r.key == "10k":
        row.target = f">= {VS_PROCESS_EXPORTER}x cheaper"
        check(row, procs.cpu * VS_PROCESS_EXPORTER <= pe.cpu)
    rows.append(row)
    rows.append(Row("latency p50 / p99, processes collector alone", PE, p50_99(procs),
                    p50_99(pe), f"{procs.p50 / pe.p50:.2f} / {procs.p99 / pe.p99:.2f}"))
    rows.append(check(Row("RSS, every collector on (ampcli cached)", NODE,
                          f"{cached.rss:.1f} MiB", f"{node.rss:.1f} MiB",
                          f"{cached.rss / node.rss:.2f}", f"< {RSS_MIB} MiB"),
                      cached.rss < RSS_MIB))
    rows.append(Row("RSS, processes collector alone", PE, f"{procs.rss:.1f} MiB",
                    f"{pe.rss:.1f} MiB", f"{procs.rss / pe.rss:.2f}"))
    first, node_first = statistics.median(s[START_AMP].first), statistics.median(node.first)
    rows.append(check(Row(f"start to first scrape (median of {len(node.first)})", NODE,
                          ms(first), ms(node_first), f"{first / node_first:.1f}",
                          f"< {FIRST_SCRAPE * 1e3:.0f} ms"), first < FIRST_SCRAPE))
    text, py = statistics.median(r.textfile), statistics.median(r.python)
    rows.append(check(Row(f"textfile run CPU (median of {len(r.textfile)})", "python -c pass",
                          ms(text), ms(py), f"{text / py:.1f}",
                          f"< {TEXTFILE_CPU * 1e3:.0f} ms"), text < TEXTFILE_CPU))
    return rows


def split_row(name: str, st: Stats, base: Stats) -> Row:
    """The total above, split: the exporter's own CPU and its reaped children's (ampcli),
    each as a share of the baseline's total (the two add up to the ratio the target checks)."""
    return Row(f"  of which own / reaped children (ampcli), {name}", NODE,
               f"{ms(st.own)} / {ms(st.children)}", f"{ms(base.own)} / {ms(base.children)}",
               f"{st.own / base.cpu:.2f} + {st.children / base.cpu:.2f}")


def ampcli_line(r: Result) -> str:
    """The stand-in ampcli's own CPU per run: the every-scrape exporter's children's CPU
    over the runs the stand-in daemon answered during its rounds (one a scrape, if the
    exporter ran it at every scrape)."""
    every = r.stats[EVERY]
    runs = every.ampcli_runs
    if not runs:
        return f"no ampcli run reached the stand-in daemon during {r.rounds} scrapes"
    per_run = every.children * r.rounds / runs
    return (f"{ms(per_run)} ±{1e3 / TICKS / runs:.2f} ms of CPU per run (the exporter's "
            f"reaped children over {runs} runs the stand-in daemon answered, "
            f"{r.rounds} scrapes{'' if runs == r.rounds else ': NOT one run a scrape'})")


def connections_line(r: Result) -> str:
    """How many connections each target's scrapes took during the rounds, and why."""
    seen = [(n, st) for n, st in r.stats.items() if st.version]
    return ", ".join(f"{n} {st.connections} ({st.version})" for n, st in seen) + (
        f" for {r.rounds} scrapes each")


def growth_rows(results: dict[str, Result]) -> list[Row]:
    rows = []
    for small, big, what in (("1k", "10k", "10,000 vs 1,000 extra processes"),
                             ("2k-sockets", "10k-sockets", "10,000 vs 2,000 extra sockets")):
        if small not in results or big not in results:
            continue
        a, b = results[small].stats, results[big].stats
        g = b[CACHED].cpu / a[CACHED].cpu
        others = ", ".join(f"{n} x{b[n].cpu / a[n].cpu:.2f}" for n in (EVERY, PROCS, NODE, PE))
        row = Row(f"CPU per scrape, {what}, ampcli cached", "the others' growth",
                  f"{ms(a[CACHED].cpu)} -> {ms(b[CACHED].cpu)}", others, f"x{g:.2f}",
                  f"x{1 - GROWTH:.1f}..x{1 + GROWTH:.1f}", abs(g - 1) <= GROWTH)
        if not row.met:
            MISSED.append(f"CPU per scrape unchanged ({what}): x{g:.2f}, target "
                          f"x{1 - GROWTH:.1f}..x{1 + GROWTH:.1f}")
        rows.append(row)
    return rows


def print_table(rows: list[Row]) -> None:
    base = [f"{r.baseline} {r.base}" for r in rows]
    w = [max(len(r.figure) for r in rows), max(len(r.ours) for r in rows),
         max(len(b) for b in base), max(len(r.ratio) for r in rows)]
    for r, b in zip(rows, base):
        met = "" if r.met is None else ("met" if r.met else "MISSED")
        print(f"  {r.figure:<{w[0]}}  {r.ours:>{w[1]}}  {b:<{w[2]}}  {r.ratio:>{w[3]}}"
              f"  {r.target:<18} {met}".rstrip())


def markdown(results: dict[str, Result], growth: list[Row], header: str) -> str:
    """One table, a column per load: 'ours vs baseline: ratio', and the growth rows."""
    loads = list(results.values())
    out = [header, "", "| figure (baseline) | target | "
           + " | ".join(r.label for r in loads) + " |",
           "|---|---|" + "---|" * len(loads)]
    for i, first in enumerate(loads[0].rows):
        cells = []
        for r in loads:
            row = r.rows[i]
            met = "" if row.met is None else (" (met)" if row.met else " (**missed**)")
            cells.append(f"{row.ours} vs {row.base}: {row.ratio}{met}")
        target = next((r.rows[i].target for r in loads if r.rows[i].target), "")
        out.append(f"| {first.figure} ({first.baseline}) | {target} | {' | '.join(cells)} |")
    out.append("| in /proc; TCP sockets in use | | " + " | ".join(
        f"{r.processes:,}; {r.tcp:,}" for r in loads) + " |")
    out.append("| stand-in ampcli's own CPU per run (ampcli every scrape) | | "
               + " | ".join(ampcli_line(r) for r in loads) + " |")
    out.append("| other work on the machine during the rounds (share of its CPUs) | | "
               + " | ".join(f"{r.others[0]:.0%} / {r.others[1]:.0%}" for r in loads) + " |")
    if growth:
        out += ["", "| growth | amp-exporter, ampcli cached | ratio | target | met | "
                "the others' growth |", "|---|---|---|---|---|---|"]
        for row in growth:
            out.append(f"| {row.figure} | {row.ours} | {row.ratio} | {row.target} | "
                       f"{'yes' if row.met else '**no**'} | {row.base} |")
    return "\n".join(out) + "\n"


# -- profile ------------------------------------------------------------------------------

# The exporter, with every request thread (each scrape) under cProfile, merged at exit.
PROFILED = """
import atexit, cProfile, pstats, runpy, socketserver, sys, threading, time
out = sys.argv.pop(1)
lock, merged = threading.Lock(), []
original = socketserver.ThreadingMixIn.process_request_thread

def profiled(self, request, client_address):
    # The thread's CPU time: a kept-alive connection's thread mostly waits for the next request.
    p = cProfile.Profile(time.thread_time)
    p.enable()
    try:
        original(self, request, client_address)
    finally:
        p.disable()
        with lock:
            merged[0].add(p) if merged else merged.append(pstats.Stats(p))

socketserver.ThreadingMixIn.process_request_thread = profiled
atexit.register(lambda: merged and merged[0].dump_stats(out))
runpy.run_module("amp_exporter", run_name="__main__", alter_sys=True)
"""


def profile(ns: livehost.ConnectorNamespace, work: Path, scrapes: int) -> None:
    """The ampcli-cached exporter's scrapes under cProfile: where they go."""
    stats_file = work / "profile.pstats"
    port = scrape.free_port()
    argv = [sys.executable, "-c", PROFILED, str(stats_file), "serve", "--ampcli.cache", "3600",
            "--web.listen-address", f"127.0.0.1:{port}"]
    s = Server("profiled", ns.wrap(argv), port, log=work / "profile.log")
    try:
        events_source(s)
        for _ in range(scrapes):
            s.get()
        s.close()  # a kept-alive connection's request thread ends, and is merged
        time.sleep(0.5)
    finally:
        s.stop()
    import pstats

    print(f"\ncProfile of {scrapes} scrapes of the ampcli-cached exporter (request threads' "
          "CPU time; by own time, then cumulative):")
    stats = pstats.Stats(str(stats_file))
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(25)


# -- main ---------------------------------------------------------------------------------

def preflight(loads: list[str]) -> Optional[str]:
    why = livehost.unavailable()
    if why:
        return why
    for tool in (NODE_EXPORTER, PROCESS_EXPORTER):
        if not os.access(tool, os.X_OK):
            return f"needs {tool} (Debian prometheus-node-exporter, prometheus-process-exporter)"
    most = max(LOADS[k][1] for k in loads)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    threads_max = int(Path("/proc/sys/kernel/threads-max").read_text())
    if process_count() + most + 2000 > min(pid_max, threads_max):
        return (f"{most:,} extra processes do not fit: {process_count():,} running, "
                f"pid_max {pid_max:,}, threads-max {threads_max:,} (not raised here)")
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    pairs = max(LOADS[k][2] for k in loads) // 2
    if high - low < pairs + 1000:
        return f"{pairs:,} loopback connections do not fit the local port range {low}-{high}"
    return None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and trials")
    parser.add_argument("--rounds", type=int, help="scrape rounds per load (default 300, "
                        "--quick 40)")
    parser.add_argument("--trials", type=int, help="fresh starts and textfile runs per load "
                        "(default 5, --quick 2)")
    parser.add_argument("--loads", default=",".join(LOADS),
                        help=f"comma-separated, of {', '.join(LOADS)}")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--profile", action="store_true",
                        help="then profile the cached exporter at the last load")
    args = parser.parse_args(argv)
    rounds = args.rounds or (40 if args.quick else 300)
    trials = args.trials or (2 if args.quick else 5)
    keys = [k for k in args.loads.split(",") if k]
    if any(k not in LOADS for k in keys):
        parser.error(f"--loads: of {', '.join(LOADS)}")
    why = preflight(keys)
    if why:
        print(f"bench/live.py cannot run here: {why}")
        return 2

    stopped: list[int] = []

    def interrupted(signum, _frame):
        stopped.append(signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    livehost.become_subreaper()
    opt_cisco_before = os.path.exists("/opt/cisco")
    work = Path(tempfile.mkdtemp(prefix="amp-bench-live-"))
    cache = work / "pycache"
    ns = loads = None
    started = time.monotonic()
    results: dict[str, Result] = {}
    try:
        with compiled_bytecode(cache):
            helper = livehost.build_helper(work)
            ns = livehost.ConnectorNamespace(work, helper, service_cgroup=True)
            ns.start()
            loads = Loads(helper)
            before = f"{process_count():,} processes and {tcp_in_use():,} TCP sockets"
            compiled = warm_bytecode(ns, work, cache)
            header = (
                f"live host: kernel {os.uname().release}, {os.cpu_count()} cores, {before} "
                f"before the load; stand-in connector {ns.stand_ins} in mount namespace "
                f"{ns.ns}, {cgroup_line(ns)}.\n"
                "Scraped as Prometheus 2.x scrapes: one kept-alive HTTP/1.1 connection per "
                "target (a new one when it answers HTTP/1.0 or closes), Accept-Encoding gzip, "
                "its OpenMetrics-first Accept; every body decompressed and parsed.\n"
                f"Bytecode as an installed copy has it: {compiled} modules compiled into "
                f"{cache} (PYTHONPYCACHEPREFIX, no PYTHONDONTWRITEBYTECODE) before timing "
                "anything.\n"
                f"{rounds} rounds (CPU per scrape in {1e3 / TICKS:.0f} ms clock ticks: "
                f"±{1e3 / TICKS / rounds:.2f} ms a scrape), {trials} trials per load.")
            print(header)
            for key in keys:
                t0 = time.monotonic()
                results[key] = r = measure(key, ns, loads, rounds, trials, work)
                print(f"\n{r.label}: {r.processes:,} processes, {r.tcp:,} TCP sockets in use, "
                      f"events source {r.events}; other work on this machine during the "
                      f"rounds: {r.others[0]:.0%} / {r.others[1]:.0%} of its CPUs "
                      f"({time.monotonic() - t0:.0f} s)")
                print("  connections the rounds took: " + connections_line(r))
                print("  stand-in ampcli, ampcli every scrape: " + ampcli_line(r))
                r.rows = rows_for(r)
                print_table(r.rows)
        growth = growth_rows(results)
        if growth:
            print("\ngrowth of CPU per scrape (the others' growth beside)")
            print_table(growth)
        if args.markdown:
            args.markdown.write_text(markdown(
                results, growth, f"Run on {time.strftime('%Y-%m-%d')}, kernel "
                f"{os.uname().release}, {os.cpu_count()} cores.\n\n"
                + header.replace(str(cache), "the run's temporary directory")))
        if args.profile:
            with compiled_bytecode(cache):
                profile(ns, work, rounds)
    except (KeyboardInterrupt, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        if stopped or isinstance(exc, KeyboardInterrupt):
            # (a Ctrl-C reaches the servers too, and a scrape may fail first)
            print(f"\ninterrupted ({signal.Signals(stopped[0]).name if stopped else exc}): "
                  "cleaned up")
            return 130
        print(f"\nbench/live.py failed: {type(exc).__name__}: {exc}")
        return 2
    finally:
        if loads:
            loads.close()
        if ns:
            ns.close()
        leftovers = livehost.end_children()
        shutil.rmtree(work, ignore_errors=True)
        if leftovers:
            print(f"cleanup: killed and reaped what was left our child: {', '.join(leftovers)}")
        if ns and ns.left():
            print(f"cleanup: processes still in the connector namespace: {ns.left()}")
        if ns and ns.cgroup_left:
            print(f"cleanup: could not remove the stand-ins' cgroup: {ns.cgroup_left}")
        if not opt_cisco_before and os.path.exists("/opt/cisco"):
            print("note: /opt/cisco appeared on this machine during the run (not ours: "
                  "the connector's files were only ever in the private namespace)")
    print(f"\nwall time {time.monotonic() - started:.0f} s; targets missed: {len(MISSED)}")
    for m in MISSED:
        print(f"  MISSED: {m}")
    return 1 if MISSED else 0


if __name__ == "__main__":
    raise SystemExit(main())
