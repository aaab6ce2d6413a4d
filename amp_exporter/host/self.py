"""The exporter's own process, as every Prometheus client describes it (process_*).

Read from our own /proc/self, never under --path.rootfs or --path.procfs: on an example
tree or in a container, the host's proc is not where this process lives. Cheap by
design: what never changes (clock ticks, page size, boot time, the fd limit) is read
once, at start; a scrape reads /proc/self/stat once and lists /proc/self/fd.

Parsers take text and raise ValueError on input they cannot make sense of; readers
raise OSError as open() does.
"""

from __future__ import annotations

import os
import resource
from typing import NamedTuple, Optional

PROC = "/proc"


class StatFields(NamedTuple):
    utime_ticks: int
    stime_ticks: int
    start_ticks: int  # after boot, in clock ticks
    vsize_bytes: int
    rss_pages: int


def parse_stat(text: str) -> StatFields:
    """/proc/PID/stat: `pid (comm) state ppid ...`; comm may hold spaces and ')', so the
    fields are counted from the last ')' (field 3, state, is the first after it)."""
    _, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 22:
        raise ValueError(f"not a proc stat line: {text[:60]!r}")
    try:
        # proc(5) numbers fields from 1: utime 14, stime 15, starttime 22, vsize 23, rss 24.
        return StatFields(int(fields[11]), int(fields[12]), int(fields[19]), int(fields[20]),
                          int(fields[21]))
    except ValueError as exc:
        raise ValueError(f"not a proc stat line: {text[:60]!r}") from exc


def parse_boot_time(text: str) -> int:
    """proc/stat's `btime SECONDS` (Unix time of boot)."""
    for line in text.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise ValueError("no btime in proc/stat")


class Sample(NamedTuple):
    cpu_seconds: float
    resident_bytes: float
    virtual_bytes: float
    start_time_seconds: float
    open_fds: float
    max_fds: Optional[float]  # None: no limit


class SelfProcess:
    """This process, read at each call of sample(); the constants read once here."""

    def __init__(self, proc: str = PROC) -> None:
        self.proc = proc
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        with open(os.path.join(proc, "stat"), encoding="ascii", errors="replace") as f:
            self.boot_time = parse_boot_time(f.read())
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.max_fds = None if soft == resource.RLIM_INFINITY else float(soft)
        self._stat = os.path.join(proc, "self", "stat")
        self._fd = os.path.join(proc, "self", "fd")

    def sample(self) -> Sample:
        with open(self._stat, "rb") as f:
            stat = parse_stat(f.read().decode("ascii", "replace"))
        return Sample(
            cpu_seconds=(stat.utime_ticks + stat.stime_ticks) / self.ticks,
            resident_bytes=float(stat.rss_pages * self.page_size),
            virtual_bytes=float(stat.vsize_bytes),
            start_time_seconds=self.boot_time + stat.start_ticks / self.ticks,
            # The listing's own descriptor is counted, as the Go and Python clients do.
            open_fds=float(len(os.listdir(self._fd))),
            max_fds=self.max_fds,
        )
