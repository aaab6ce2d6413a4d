"""The connector's logs: size, last write, and lines by level, read incrementally.

Each scrape reads only what was appended since the last one (at most READ_LIMIT
bytes), so a 200 MB log costs nothing once seen. The file as last read stays open
between scrapes (one fd per log, as `tail -F` does): when logrotate renames it away,
the lines written to it since the last scrape are still read from that handle before
the new file is read from its top, so a rotation loses no line. A shrunk file is a
truncation (copytruncate): what was written just before it is gone for every reader.
The first sight of a file starts at its end, so counters begin at 0 rather than
replaying history.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import BinaryIO, Optional

from amp_exporter.host import connector_files
from amp_exporter.host.paths import open_host_file
from amp_exporter.registry import Collector, counter, gauge, host_error, register

LOG_FILES = {"ampdaemon": "var/log/cisco/ampdaemon.log",
             "ampscansvc": "var/log/cisco/ampscansvc.log"}
LEVELS = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
_LEVEL_ALIASES = {"err": "error", "warn": "warning", "crit": "critical", "emerg": "emergency",
                  "fatal": "critical"}
# "Nov 25 04:12:01 host ampdaemon[1187]: Info: message" -> "Info"
_LEVEL = re.compile(rb"\]:\s*([A-Za-z]+):")
READ_LIMIT = 4 << 20


def line_level(line: bytes) -> str:
    match = _LEVEL.search(line)
    if not match:
        return "other"
    word = match.group(1).decode("ascii", "replace").lower()
    word = _LEVEL_ALIASES.get(word, word)
    return word if word in LEVELS else "other"


NAME = "logs"
SIZE = gauge(NAME, "cisco_amp_log_size_bytes", "Size of the connector's log file.", ("log",))
MODIFIED = gauge(NAME, "cisco_amp_log_modified_timestamp_seconds",
                 "Last write to the connector's log file (Unix time).", ("log",))
LINES = counter(NAME, "cisco_amp_log_lines",
                "Lines appended to the log since the exporter started, by level (" +
                ", ".join(LEVELS) + ", other).", ("log", "level"))
ROTATIONS = counter(NAME, "cisco_amp_log_rotations", "Rotations or truncations of the log seen.",
                    ("log",))


@dataclass
class _Tail:
    inode: int = -1
    offset: int = 0
    partial: bytes = b""
    lines: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*LEVELS, "other"), 0))
    rotations: int = 0
    handle: Optional[BinaryIO] = None  # the file as last read, kept for its last lines

    def count(self, data: bytes) -> None:
        chunks = (self.partial + data).split(b"\n")
        self.partial = chunks.pop()[-65536:]  # an unfinished last line waits for its end
        for line in chunks:
            if line:
                self.lines[line_level(line)] += 1

    def finish_rotated(self) -> None:
        """Read what was written to the renamed-away file since the last scrape, count its
        unfinished last line too (nothing will end it now), and let it go."""
        if self.handle is None:
            return
        try:
            self.handle.seek(self.offset)
            self.count(self.handle.read(READ_LIMIT))
        except OSError:
            pass  # its last lines are lost, as they would be without the handle
        if self.partial:
            self.count(b"\n")
        self.close()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


@register
class LogsCollector(Collector):
    name = NAME
    help = "Connector log files: size, last write, lines by level, rotations (incremental)."

    def __init__(self, settings, shared) -> None:
        super().__init__(settings, shared)
        self._tails: dict[str, _Tail] = {}
        self._lock = threading.Lock()

    def collect(self):
        if not connector_files.installed(self.paths):
            return []
        size, modified, lines, rotations = (d.family() for d in (SIZE, MODIFIED, LINES,
                                                                  ROTATIONS))
        with self._lock:
            for name, rel in LOG_FILES.items():
                path = self.paths.root(rel)
                try:
                    # One open file is the truth for this scrape: stat-then-open could see
                    # one inode and read another if logrotate ran in between.
                    handle = open_host_file(path)
                except FileNotFoundError:
                    # No log (yet), or rotated away and not created again yet.
                    if name in self._tails:
                        self._tails[name].finish_rotated()
                    continue
                except OSError as exc:
                    raise host_error(exc, f"reading {rel}") from exc
                try:
                    st = os.fstat(handle.fileno())
                    tail = self._advance(name, handle, st)
                except OSError as exc:
                    handle.close()  # not the tail's yet: _advance keeps it only on success
                    raise host_error(exc, f"reading {rel}") from exc
                size.add_metric([name], float(st.st_size))
                modified.add_metric([name], st.st_mtime)
                for level, count in tail.lines.items():
                    lines.add_metric([name, level], float(count))
                rotations.add_metric([name], float(tail.rotations))
        return [size, modified, lines, rotations]

    def _advance(self, name: str, handle: BinaryIO, st: os.stat_result) -> _Tail:
        """Count the lines appended since the last scrape; HANDLE becomes the tail's."""
        tail = self._tails.get(name)
        if tail is None:
            tail = self._tails[name] = _Tail(inode=st.st_ino, offset=st.st_size)
        elif st.st_ino != tail.inode:  # renamed away (logrotate's default), a new file here
            tail.finish_rotated()  # unless let go already, when the log was absent a while
            tail.inode, tail.offset, tail.partial = st.st_ino, 0, b""
            tail.rotations += 1
        elif st.st_size < tail.offset:  # truncated in place (copytruncate)
            tail.offset, tail.partial = 0, b""
            tail.rotations += 1
        if st.st_size > tail.offset:
            handle.seek(tail.offset)
            # Up to the size seen in fstat: what is appended after it belongs to the next
            # scrape, so size and lines agree.
            data = handle.read(min(READ_LIMIT, st.st_size - tail.offset))
            tail.offset += len(data)
            tail.count(data)
        tail.close()  # the previous scrape's handle on this same file
        tail.handle = handle
        return tail

    def close(self) -> None:
        with self._lock:
            for tail in self._tails.values():
                tail.close()
