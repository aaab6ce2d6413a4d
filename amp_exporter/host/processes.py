"""Finding the connector's processes cheaply, and what each one holds.

A full `psutil.process_iter()` costs 140-280 ms on a 2,000-process host, every
scrape. Instead, each refresh lists `proc` once (the directory entries carry
their inode numbers for free) and reads only PIDs it has not seen before: a
PID whose `/proc/PID` inode is unchanged is the same process as last time.
Only the few connector processes are read in full (through psutil, pointed at
the configured procfs).

Scan-service restarts are counted here, from process identities (PID + start
time) that appear between refreshes. A refresh runs under a lock, so
concurrent scrapes count each restart once.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

import psutil

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


class ProcessTable:
    """Incremental view of the connector's processes, shared by every collector."""

    def __init__(self, paths: HostPaths) -> None:
        self.paths = paths
        self._local = threading.local()
        # psutil reads one procfs per process; the exporter only ever has one.
        psutil.PROCFS_PATH = str(paths.procfs)
        self._lock = threading.Lock()
        self._other: dict[int, int] = {}  # pid -> /proc/PID inode, for non-connector PIDs
        self._recheck: set[int] = set()
        self._connector: dict[int, tuple[int, int, str, psutil.Process]] = {}
        self._identities: dict[str, set[tuple[int, int]]] = collections.defaultdict(set)
        self._restarts: dict[str, int] = collections.defaultdict(int)
        self._restart_times: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=1000)
        )
        self._refreshes = 0
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

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
        pids: dict[int, int] = {}
        with os.scandir(self.paths.procfs) as entries:
            for entry in entries:
                name = entry.name
                if name.isdigit():
                    pids[int(name)] = entry.inode()
        return pids

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

    # -- refresh -----------------------------------------------------------------------

    def _refresh(self) -> ProcessSnapshot:
        now = time.monotonic()
        current = self._list_pids()
        uptime = self._uptime()
        # Forget PIDs that are gone; a changed inode means a new process under an old PID.
        for pid in list(self._other):
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
                self._connector[pid] = (inode, start, name, _psutil_process(pid))

        processes = []
        for pid, (_inode, start, name, handle) in sorted(self._connector.items()):
            proc = self._read_process(pid, name, start, handle)
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

    def _read_process(
        self, pid: int, name: str, start: int, handle: Optional[psutil.Process]
    ) -> Optional[ConnectorProcess]:
        proc = ConnectorProcess(pid=pid, name=name, start_ticks=start)
        if handle is not None:
            # Field by field: a host tree (or kernel) without one proc file loses that
            # figure only, not the whole process.
            readers = {
                "cpu": handle.cpu_times, "rss": lambda: handle.memory_info().rss,
                "threads": handle.num_threads, "uid": lambda: handle.uids().real,
                "start": handle.create_time,
            }
            values = {}
            with handle.oneshot():
                for key, read in readers.items():
                    try:
                        values[key] = read()
                    except (psutil.Error, OSError) as exc:
                        if not os.path.isdir(self.paths.proc(str(pid))):
                            return None  # exited between listing and reading
                        log.debug("cannot read process field",
                                  extra={"pid": pid, "field": key, "err": str(exc)})
            if "cpu" in values:
                proc.cpu_user_seconds = values["cpu"].user
                proc.cpu_system_seconds = values["cpu"].system
            proc.resident_bytes = values.get("rss")
            proc.threads = values.get("threads")
            proc.uid = values.get("uid")
            proc.start_time = values.get("start")
        if not os.path.isdir(self.paths.proc(str(pid))):
            return None
        self._read_fds(proc)
        return proc

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


def _psutil_process(pid: int) -> Optional[psutil.Process]:
    try:
        return psutil.Process(pid)
    except (psutil.Error, OSError):
        return None
