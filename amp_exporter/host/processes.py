"""Finding the connector's processes cheaply, and what each one holds.

A full `psutil.process_iter()` costs 140-280 ms on a 2,000-process host, every
scrape, and even a bare listing of `proc` grows with the host (a refresh that lists
took ~0.7 ms at 1,000 processes and ~5.7 ms at 10,000 here). So once the connector's
processes are known, a refresh asks the kernel about them alone (~0.2 ms either way):

- each known process's own `proc/PID/stat` (and `exe`), read again every time: the
  same PID with the same start time and binary is the same process;
- the service's cgroup, from `proc/PID/cgroup` of a known process (on a systemd host
  the unit's, `.../cisco-amp.service`): its `cgroup.procs` names every process of the
  service, so a scan service the daemon restarted, or a whole unit restarted, is
  found there. cgroup v2 (unified, `sys/fs/cgroup` or `sys/fs/cgroup/unified`) and v1
  (the `name=systemd` hierarchy, then `pids`, `cpu`, ...) alike, always under the
  configured sysfs (a container's /host/sys/fs/cgroup, whatever its own cgroup namespace);
  the cgroup is used only when it lists the process it was found from (one of another
  PID namespace, which shows those processes as 0 or not at all, or a stale tree does not).

A first refresh (and one while no connector process is known) looks first at the
unit's own cgroup where systemd runs it (UNIT_CGROUPS: `system.slice/cisco-amp.service`),
and takes the connector processes it names: a start, and every `textfile` or `check` run,
then costs what a scrape does, whatever the host's process count.

The full listing of `proc` is the bounded fallback: on the first refresh when the unit's
cgroup names no connector process, while no connector process is known, when the cgroup
cannot be read (permission, no cgroup
file or mount, the root cgroup, one too big to be a service's), when a known process
is gone and its cgroup shows no successor of that name, and every
FULL_LISTING_SECONDS anyway (longer on a host where a listing costs more than
LISTING_CPU_SHARE allows), so that a connector process started outside the cgroup
is still found. The listing carries each entry's inode for free, and a PID seen
before with the same `/proc/PID` inode is not read again. Only the few connector
processes are read in full: their `stat`, `statm` and `status`, under the configured
procfs (what psutil would read, without its import: ~5 ms of start-up and 1 MiB).
COUNTS says how often each way was taken.

Restarts are counted here, from process identities (PID + start time) that appear
between refreshes, whichever way they were found. A refresh runs under a lock, so
concurrent scrapes count each restart once.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Optional

from amp_exporter.host.paths import HostPaths, read_text

log = logging.getLogger("amp_exporter.host.processes")

CONNECTOR_BIN_DIR = "/opt/cisco/amp/bin/"
# Always reported (up 0 or 1) on a host with the connector installed.
EXPECTED_PROCESSES = ("ampdaemon", "ampscansvc")
KNOWN_PROCESSES = (*EXPECTED_PROCESSES, "ampupdater")
SCAN_SERVICE = "ampscansvc"
DAEMON = "ampdaemon"
# Our own `ampcli status` runs are not the connector's processes.
IGNORED = ("ampcli",)
# A process younger than this when first seen may still be between fork and exec:
# look at it again next time rather than remember the parent's name.
_YOUNG_SECONDS = 2.0
_MAX_FDS_READ = 65536
# While the cgroup answers, proc is still listed this often, for a connector process
# started outside the service's cgroup (by hand from a shell, by another unit). Only such
# a process's first sighting waits for it: the connector's own processes (the daemon's
# children, a restarted unit) are in the cgroup, proc is listed at once whenever a known
# process goes with no successor in the cgroup or none is known, and a stray process once
# found is followed like the others. 300 s, because the period has to span several scrape
# intervals or it saves nothing: Prometheus scrapes every 60 s by default and the shipped
# configurations every 30 s, so 60 s would list at every or every other scrape; 300 s lists
# at one scrape in 5, 10 or 20 (at 60, 30, 15 s). And the delay is harmless: no alert reads
# a process's instances, and 300 s is the shortest `for:` of the shipped alerts and half
# the fault 6 restart window (600 s).
FULL_LISTING_SECONDS = 300.0
# And no more often than keeps its cost at this share of one CPU (0.1 ms per 15 s), up to
# MAX_LISTING_SECONDS: the kernel alone takes ~4-5 ms to list 10,000 processes, ~10 ms
# with our side, which every 300 s would add ~0.5 ms to each 15 s scrape (a quarter of
# one) and grow with the host; at this share it waits ~25 min there, while a listing of
# 1,000 processes (~1 ms) keeps the 300 s.
LISTING_CPU_SHARE = 0.0001 / 15
MAX_LISTING_SECONDS = 3600.0
# Where systemd runs the connector (its unit is cisco-amp.service): looked at before proc is
# listed on a first collection. cgroup v2 (or hybrid's unified), then v1's name=systemd.
UNIT_CGROUPS = ("system.slice/cisco-amp.service", "unified/system.slice/cisco-amp.service",
                "systemd/system.slice/cisco-amp.service")
# A cgroup naming more processes than this is not one service's (a container's or a
# login session's): following its members (a stat of /proc/PID each) would cost what the
# listing does at a few hundred processes, and the listing is used instead. The
# connector's own cgroup holds a handful.
_MAX_CGROUP_MEMBERS = 256
# cgroup.procs holds one decimal PID (up to 7 digits, pid_max <= 2^22) and a newline each.
_CGROUP_PROCS_LIMIT = (_MAX_CGROUP_MEMBERS + 1) * 8


class Counts:
    """How often the process table asked the host what, since start: the tests and the
    benches read it (a listing of proc is what the cgroup is there to avoid)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.proc_listings = 0  # full listings of proc
        self.cgroup_reads = 0  # cgroup.procs files read

    def add(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)


COUNTS = Counts()


@dataclass
class ConnectorProcess:
    pid: int
    name: str
    start_ticks: int
    # None where the host would not tell (a missing or unreadable proc file).
    start_time: Optional[float] = None
    cpu_user_seconds: Optional[float] = None
    cpu_system_seconds: Optional[float] = None
    resident_bytes: Optional[int] = None
    threads: Optional[int] = None
    open_fds: int = 0
    uid: Optional[int] = None
    bpf_programs: int = 0
    bpf_maps: int = 0
    bpf_program_types: dict[str, int] = field(default_factory=dict)
    socket_inodes: set[int] = field(default_factory=set)
    fds_readable: bool = True

    @property
    def identity(self) -> tuple[int, int]:
        return (self.pid, self.start_ticks)


@dataclass
class ProcessSnapshot:
    processes: list[ConnectorProcess]
    taken_at: float
    restarts: dict[str, int]
    recent_restarts: dict[str, list[float]]  # monotonic times of restarts, per name

    def by_name(self, name: str) -> list[ConnectorProcess]:
        return [p for p in self.processes if p.name == name]

    def running(self, name: str) -> bool:
        return any(p.name == name for p in self.processes)

    def names(self) -> set[str]:
        return {p.name for p in self.processes}


def _parse_stat(text: str) -> tuple[str, int, int]:
    """(comm, parent PID, starttime in clock ticks) from /proc/PID/stat. comm may hold ')'
    or spaces. Raises ValueError on anything else."""
    head, paren, tail = text.rpartition(")")
    comm = head.partition("(")[2]
    fields = tail.split()
    if not paren or len(fields) < 20:
        raise ValueError(f"not a proc/PID/stat line: {text[:60]!r}")
    return comm, int(fields[1]), int(fields[19])


def cgroup_candidates(text: str) -> list[tuple[str, str]]:
    """Where the cgroups of a proc/PID/cgroup text may be, best first: (hierarchy
    directory under sys/fs/cgroup, cgroup path relative to it).

    Only the hierarchies a service manager gives each service a cgroup of: v2,
    `0::/system.slice/cisco-amp.service`, at `sys/fs/cgroup` itself (v2 only) or at
    `sys/fs/cgroup/unified` (hybrid); v1, `ID:CONTROLLERS:PATH`, the `name=systemd`
    hierarchy at `sys/fs/cgroup/systemd` (where systemd tracks units), then the `pids`
    controller (systemd accounts tasks per unit by default), then `cpu` and `cpuacct`
    (at `cpu,cpuacct` or on their own). Not the others (`memory`, `cpuset`, ...): a
    process is often in a container's or a machine slice's cgroup there, which holds far
    more than the service. Left out too: the root cgroup (it holds every process not in
    another: reading it is a listing of the host).

    A reader in a cgroup namespace of its own (the exporter in a container on a v2 host)
    is shown the path from its namespace's root, `/../../system.slice/cisco-amp.service`:
    what follows the climb is then the path from the top of the hierarchy, which the host's
    own cgroup mount (`/host/sys/fs/cgroup`) shows, unless the namespace's root and the
    service share a deeper ancestor. Either way the caller keeps a directory only when it
    lists the process the path came from: a wrong guess costs one failed read."""
    ranked = []
    for order, line in enumerate(text.splitlines()):
        hierarchy, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        parts = [p for p in path.split("/") if p]
        while parts and parts[0] == "..":
            del parts[0]
        if not sep or not path.startswith("/") or not parts or ".." in parts or "." in parts:
            continue
        relative = "/".join(parts)
        names = [n for n in controllers.split(",") if n]
        if hierarchy == "0" and not names:
            ranked.append((0, order, ("", "unified"), relative))
        elif "name=systemd" in names:
            ranked.append((1, order, ("systemd",), relative))
        elif "pids" in names:
            ranked.append((2, order, (controllers, "pids") if len(names) > 1 else ("pids",),
                           relative))
        elif {"cpu", "cpuacct"} & set(names):
            own = tuple(n for n in ("cpu", "cpuacct") if n in names)
            ranked.append((3, order, (controllers, *own) if len(names) > 1 else own,
                           relative))
    return [(d, relative) for *_, dirs, relative in sorted(ranked) for d in dirs]


def parse_cgroup_procs(text: str) -> set[int]:
    """The PIDs of a cgroup.procs file (0 is a process outside the reader's PID namespace:
    left out); ValueError on anything else."""
    return {int(word) for word in text.split()} - {0}


def read_cgroup_members(directory: str) -> set[int]:
    """The PIDs DIRECTORY's cgroup.procs names. OSError when it cannot be read, ValueError
    when it is not a cgroup.procs file or names more than a service's share of processes."""
    text = read_text(os.path.join(directory, "cgroup.procs"), _CGROUP_PROCS_LIMIT)
    COUNTS.add("cgroup_reads")
    if len(text) >= _CGROUP_PROCS_LIMIT:
        raise ValueError(f"more than {_MAX_CGROUP_MEMBERS} processes")
    return parse_cgroup_procs(text)


class ProcessTable:
    """Incremental view of the connector's processes, shared by every collector."""

    def __init__(self, paths: HostPaths) -> None:
        self.paths = paths
        self._local = threading.local()
        self._lock = threading.Lock()
        self._other: dict[int, int] = {}  # pid -> /proc/PID inode, for non-connector PIDs
        self._recheck: set[int] = set()
        self._connector: dict[int, tuple[int, int, str]] = {}  # pid -> (inode, start, name)
        self._boot_time: Optional[float] = None  # proc/stat btime, read once
        self._page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._identities: dict[str, set[tuple[int, int]]] = collections.defaultdict(set)
        self._restarts: dict[str, int] = collections.defaultdict(int)
        self._restart_times: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=1000)
        )
        self._refreshes = 0
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.full_listing_seconds = FULL_LISTING_SECONDS
        self.listing_cpu_share: Optional[float] = LISTING_CPU_SHARE  # None: no such cap
        self._last_listing = -float("inf")
        self._listing_cpu = 0.0  # seconds of CPU the last listing took
        self._cgroup: Optional[str] = None  # the connector's cgroup directory, last found
        # Why the last refresh listed proc (None: the cgroup told), and the last one logged.
        self.listing_reason: Optional[str] = None
        self._logged_reason: Optional[str] = None

    def begin_scrape(self) -> None:
        """The collectors of the scrape running in this thread will share one fresh look."""
        self._local.snapshot = None

    def snapshot(self) -> ProcessSnapshot:
        """This scrape's snapshot, taken on first use (refreshes run one at a time).
        Raises OSError when proc cannot be listed (the collector layer says why)."""
        snap = getattr(self._local, "snapshot", None)
        if snap is None:
            with self._lock:
                snap = self._refresh()
            self._local.snapshot = snap
        return snap

    # -- discovery ---------------------------------------------------------------------

    def _list_pids(self) -> dict[int, int]:
        COUNTS.add("proc_listings")
        with os.scandir(self.paths.procfs) as entries:
            return {int(e.name): e.inode() for e in entries if e.name.isdigit()}

    def _uptime(self) -> Optional[float]:
        try:
            return float(read_text(self.paths.proc("uptime"), 256).split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _classify(self, pid: int, uptime: Optional[float]) -> Optional[tuple[str, int]]:
        """(connector process name, start ticks) for a connector process, else None."""
        try:
            comm, ppid, start = _parse_stat(read_text(self.paths.proc(str(pid), "stat"), 4096))
        except (OSError, ValueError):
            return None  # gone, or unreadable: not ours to report
        young = uptime is not None and uptime - start / self._ticks < _YOUNG_SECONDS
        if young:
            self._recheck.add(pid)
        name = self._connector_name(pid, comm)
        parent = self._connector.get(ppid)
        if name and young and parent is not None and parent[2] == name:
            # A fork of a connector process that has not exec'd yet (the daemon starting
            # the scan service): neither another instance nor a restart. Look again next time.
            return None
        return (name, start) if name else None

    def _connector_name(self, pid: int, comm: str) -> Optional[str]:
        if not comm.startswith("amp") or comm in IGNORED:
            return None
        try:
            exe = os.readlink(self.paths.proc(str(pid), "exe"))
        except OSError:
            # No ptrace access to another user's process: trust the well-known names.
            return comm if comm in KNOWN_PROCESSES else None
        exe = exe.removesuffix(" (deleted)")  # an upgraded binary still running
        if not exe.startswith(CONNECTOR_BIN_DIR):
            return None
        name = os.path.basename(exe)
        return None if name in IGNORED else name

    def _inodes(self, pids: Iterable[int]) -> dict[int, int]:
        """{pid: /proc/PID inode} of those PIDs that still exist (what the listing gives)."""
        found = {}
        for pid in pids:
            try:
                found[pid] = os.stat(self.paths.proc(str(pid))).st_ino
            except OSError:
                continue  # gone
        return found

    def _cgroup_members(self, anchors: list[int]) -> tuple[Optional[str], set[int], str]:
        """(the connector's cgroup directory, the PIDs it lists, why not when it is None).
        The cgroup is one of an anchor's (a known connector process alive now) that lists
        that anchor; with no anchor alive, the cgroup found last (a unit restarted: the same
        cgroup, all its processes new), whose members are then judged by what they run."""
        why = "no cgroup known"
        for pid, directory, why_not in self._cgroup_places(anchors):
            if directory is None:
                why = why_not
                continue
            procs = os.path.join(directory, "cgroup.procs")
            try:
                members = read_cgroup_members(directory)
            except OSError as exc:
                why = f"cannot read {procs} ({exc.strerror})"
                continue
            except ValueError as exc:
                why = f"{procs}: {exc}"
                continue
            if pid is None or pid in members:
                return directory, members, ""
            why = f"{procs} does not list process {pid}"
        return None, set(), why

    def _cgroup_places(
        self, anchors: list[int]
    ) -> Iterator[tuple[Optional[int], Optional[str], str]]:
        """(anchor PID or None, a cgroup directory to try, or None and why there is none),
        best first: the cgroup found last (kept if it still lists the first anchor, which
        a process moved elsewhere would not be: then proc/PID/cgroup is read again), then
        each anchor's cgroups from its proc/PID/cgroup."""
        if self._cgroup is not None:
            yield (anchors[0] if anchors else None), self._cgroup, ""
        for pid in anchors:
            try:
                text = read_text(self.paths.proc(str(pid), "cgroup"), 64 << 10)
            except OSError as exc:
                yield pid, None, f"cannot read proc/{pid}/cgroup ({exc.strerror})"
                continue
            places = [self.paths.sys("fs/cgroup", d, rel) for d, rel in cgroup_candidates(text)]
            if not places:
                yield pid, None, (f"process {pid} is in no cgroup of its own (the root "
                                  "cgroup, or one outside our cgroup namespace)")
            for directory in places:
                yield pid, directory, ""

    def _refresh_from_cgroup(self, uptime: Optional[float]) -> Optional[str]:
        """Look at the known connector processes and their cgroup's members only. Returns
        why proc must be listed after all, or None when the cgroup told."""
        before = self._identities_by_name()
        alive = self._inodes(self._connector)
        anchors = sorted((pid for pid, inode in alive.items() if inode == self._connector[pid][0]),
                         key=lambda pid: (self._connector[pid][2] != DAEMON, pid))
        directory, members, why = self._cgroup_members(anchors)
        if directory is None:
            return why
        self._cgroup = directory
        looked = set(self._connector) | members | self._recheck
        current = {**alive, **self._inodes(looked - set(alive))}
        self._update(current, uptime, looked)
        after = self._identities_by_name()
        for name, identities in sorted(before.items()):
            now = after.get(name, set())
            gone = identities - now
            if gone and not now - identities:
                pids = ", ".join(str(pid) for pid, _ in sorted(gone))
                return f"{name} (PID {pids}) is gone and {directory} lists no new one"
        return None

    def _identities_by_name(self) -> dict[str, set[tuple[int, int]]]:
        by_name: dict[str, set[tuple[int, int]]] = collections.defaultdict(set)
        for pid, (_inode, start, name) in self._connector.items():
            by_name[name].add((pid, start))
        return by_name

    def _from_unit_cgroup(self, uptime: Optional[float]) -> bool:
        """On a first collection (or with no connector process known): look in the
        connector's unit's own cgroup first (UNIT_CGROUPS), so that a start, and every
        `textfile` or `check` run, costs the same on a host of 10,000 processes as on one of
        100. True when it named connector processes (what they run is checked as in a
        listing: a stale or foreign cgroup names none of ours, and proc is listed)."""
        for relative in UNIT_CGROUPS:
            directory = self.paths.sys("fs/cgroup", relative)
            try:
                members = read_cgroup_members(directory)
            except (OSError, ValueError):
                continue  # not a systemd host, another hierarchy, no such unit
            if not members:
                continue
            self._update(self._inodes(members), uptime, members)
            if self._connector:
                self._cgroup = directory
                return True
        return False

    def listing_period(self) -> float:
        """Seconds between periodic listings while the cgroup answers: FULL_LISTING_SECONDS,
        longer where a listing costs more than LISTING_CPU_SHARE allows."""
        period = self.full_listing_seconds
        if self.listing_cpu_share:
            period = max(period, min(MAX_LISTING_SECONDS,
                                     self._listing_cpu / self.listing_cpu_share))
        return period

    def _listing_due(self, now: float) -> Optional[str]:
        if self._refreshes == 0:
            return "first collection"
        if not self._connector:
            return "no connector process known"
        period = self.listing_period()
        if now - self._last_listing >= period:
            return f"periodic (every {period:.0f}s)"
        return None

    # -- refresh -----------------------------------------------------------------------

    def _refresh(self) -> ProcessSnapshot:
        now = time.monotonic()
        uptime = self._uptime()
        why = self._listing_due(now)
        if why is None:
            why = self._refresh_from_cgroup(uptime)
        elif not self._connector and self._from_unit_cgroup(uptime):
            # Found where systemd runs it: the full look waits for its period, as if proc
            # had just been listed (for a connector process started outside the unit).
            why = None
            self._last_listing = now
        self.listing_reason = why
        if why is not None:
            if why != self._logged_reason:
                # Not an error: the listing finds everything the cgroup would have.
                log.debug("listing proc to find the connector's processes",
                          extra={"why": why})
                self._logged_reason = why
            cpu = time.thread_time()
            self._update(self._list_pids(), uptime, None)
            self._listing_cpu = time.thread_time() - cpu
            self._last_listing = now
        else:
            self._logged_reason = None

        processes = []
        for pid, (_inode, start, name) in sorted(self._connector.items()):
            proc = self._read_process(pid, name, start)
            if proc is not None:
                processes.append(proc)
        self._count_restarts(processes, now)
        self._refreshes += 1
        return ProcessSnapshot(
            processes=processes,
            taken_at=now,
            restarts=dict(self._restarts),
            recent_restarts={k: list(v) for k, v in self._restart_times.items()},
        )

    def _update(self, current: dict[int, int], uptime: Optional[float],
                looked: Optional[set[int]]) -> None:
        """Take in what CURRENT ({pid: /proc/PID inode}) shows: all of proc (LOOKED None,
        a listing), or the PIDs in LOOKED that still exist."""
        # Forget PIDs that are gone; a changed inode means a new process under an old PID.
        seen = list(self._other) if looked is None else [p for p in looked if p in self._other]
        for pid in seen:
            if current.get(pid) != self._other[pid]:
                del self._other[pid]
        for pid in list(self._connector):
            if current.get(pid) != self._connector[pid][0]:
                del self._connector[pid]
        recheck, self._recheck = self._recheck, set()
        for pid, inode in current.items():
            if pid in self._other and pid not in recheck:
                continue
            # Connector PIDs are few: read them again every time, so a process that
            # re-executed or restarted under the same PID is seen as new.
            found = self._classify(pid, uptime)
            if found is None:
                self._connector.pop(pid, None)
                self._other[pid] = inode
                continue
            self._other.pop(pid, None)
            name, start = found
            known = self._connector.get(pid)
            if known is None or known[1:3] != (start, name):
                self._connector[pid] = (inode, start, name)

    def _count_restarts(self, processes: Iterable[ConnectorProcess], now: float) -> None:
        """A new identity of a process name is a restart when that name ran before, or when
        the daemon that starts it was already running last time. Never on the first refresh."""
        by_name: dict[str, set[tuple[int, int]]] = collections.defaultdict(set)
        for p in processes:
            by_name[p.name].add(p.identity)
        daemon_before = self._identities.get(DAEMON, set())
        daemon_now = by_name.get(DAEMON, set())
        daemon_kept = bool(daemon_before & daemon_now)
        for name, identities in by_name.items():
            known = self._identities[name]
            new = identities - known
            if self._refreshes > 0 and new and (known or daemon_kept):
                self._restarts[name] += len(new)
                self._restart_times[name].extend([now] * len(new))
            # Keep only live identities plus a marker that the name was seen.
            self._identities[name] = identities or known
        for name in list(self._identities):
            if name not in by_name:
                # Gone now: remember it ran, so its return counts as a restart.
                self._identities[name] = self._identities[name] or {(-1, -1)}

    def _read_process(self, pid: int, name: str, start: int) -> Optional[ConnectorProcess]:
        proc = ConnectorProcess(pid=pid, name=name, start_ticks=start)
        # File by file: a host tree (or kernel) without one proc file loses its figures
        # only, not the whole process.
        for what, read in (("stat", self._read_stat), ("statm", self._read_statm),
                           ("status", self._read_status)):
            try:
                read(proc, read_text(self.paths.proc(str(pid), what), 8192))
            except (OSError, ValueError, IndexError) as exc:
                if not os.path.isdir(self.paths.proc(str(pid))):
                    return None  # exited between listing and reading
                log.debug("cannot read process file",
                          extra={"pid": pid, "file": what, "err": str(exc)})
        if not os.path.isdir(self.paths.proc(str(pid))):
            return None
        self._read_fds(proc)
        return proc

    def _read_stat(self, proc: ConnectorProcess, text: str) -> None:
        fields = text.rpartition(")")[2].split()
        # utime, stime, starttime: fields 14, 15 and 22 of proc(5), in clock ticks
        proc.cpu_user_seconds = int(fields[11]) / self._ticks
        proc.cpu_system_seconds = int(fields[12]) / self._ticks
        boot = self._boot()
        if boot is not None:
            proc.start_time = boot + int(fields[19]) / self._ticks

    def _read_statm(self, proc: ConnectorProcess, text: str) -> None:
        proc.resident_bytes = int(text.split()[1]) * self._page_size

    @staticmethod
    def _read_status(proc: ConnectorProcess, text: str) -> None:
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key == "Threads":
                proc.threads = int(value)
            elif key == "Uid":
                proc.uid = int(value.split()[0])  # the real UID

    def _boot(self) -> Optional[float]:
        """The host's boot time (proc/stat btime), read once: process start times are
        counted from it."""
        if self._boot_time is None:
            try:
                for line in read_text(self.paths.proc("stat"), 1 << 20).splitlines():
                    if line.startswith("btime "):
                        self._boot_time = float(line.split()[1])
                        break
            except (OSError, ValueError, IndexError):
                return None
        return self._boot_time

    def _read_fds(self, proc: ConnectorProcess) -> None:
        fd_dir = self.paths.proc(str(proc.pid), "fd")
        try:
            fds = os.listdir(fd_dir)[:_MAX_FDS_READ]
        except (FileNotFoundError, ProcessLookupError):
            return  # exiting (or a zombie): it holds no files now, which is not a failure
        except OSError:
            proc.fds_readable = False
            return
        proc.open_fds = len(fds)
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except PermissionError:
                # The directory can be listed (CAP_DAC_READ_SEARCH) but not its links
                # (CAP_SYS_PTRACE): counting on would report 0 BPF programs as a fact.
                proc.fds_readable = False
                return
            except OSError:
                continue  # closed since the listing
            if target == "anon_inode:bpf-prog":
                proc.bpf_programs += 1
                prog_type = self._prog_type(proc.pid, fd)
                proc.bpf_program_types[prog_type] = proc.bpf_program_types.get(prog_type, 0) + 1
            elif target == "anon_inode:bpf-map":
                proc.bpf_maps += 1
            elif target.startswith("socket:["):
                with contextlib.suppress(ValueError):
                    proc.socket_inodes.add(int(target[8:-1]))

    def _prog_type(self, pid: int, fd: str) -> str:
        try:
            text = read_text(self.paths.proc(str(pid), "fdinfo", fd), 4096)
        except OSError:
            return "unknown"
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "prog_type":
                value = value.strip()
                return value if value.isdigit() and len(value) <= 3 else "unknown"
        return "unknown"
