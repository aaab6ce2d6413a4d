"""The one door to the host's files.

Every file the exporter reads is named relative to the host root, so the same
program reads a real host (`--path.rootfs /`), a container's view of it
(`--path.rootfs /host`) or an example tree. Absolute symlinks inside the tree
(`lib/modules/R/build -> /usr/src/kernels/R`) are resolved against the root, as
a chroot would, never against the exporter's own filesystem.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Optional

# Reads are capped: a host file that is suddenly huge must not cost a scrape its memory.
DEFAULT_READ_LIMIT = 1 << 20
_MAX_SYMLINK_HOPS = 40


class HostPaths:
    """Paths under the configured root, proc and sys trees."""

    def __init__(
        self, rootfs: str = "/", procfs: Optional[str] = None, sysfs: Optional[str] = None
    ) -> None:
        self.rootfs = Path(rootfs)
        self.procfs = Path(procfs) if procfs else self.rootfs / "proc"
        self.sysfs = Path(sysfs) if sysfs else self.rootfs / "sys"
        # Joined as strings: these are called thousands of times a scrape, and pathlib's
        # parsing cost more than the reads themselves.
        self._root, self._proc, self._sys = str(self.rootfs), str(self.procfs), str(self.sysfs)

    def __repr__(self) -> str:
        return f"HostPaths(rootfs={self.rootfs}, procfs={self.procfs}, sysfs={self.sysfs})"

    def root(self, *parts: str) -> str:
        """A path under the host root: root('etc', 'passwd')."""
        return os.path.join(self._root, *(p.lstrip("/") for p in parts))

    def proc(self, *parts: str) -> str:
        return os.path.join(self._proc, *parts)

    def sys(self, *parts: str) -> str:
        return os.path.join(self._sys, *(p.lstrip("/") for p in parts))

    @property
    def procfs_is_live(self) -> bool:
        """True when procfs is this kernel's own (netlink answers about the same processes)."""
        try:
            return os.path.samefile(self.procfs, "/proc") and os.path.ismount(self.procfs)
        except OSError:
            return False

    def resolve(self, host_path: str) -> Optional[Path]:
        """Resolve a host path (e.g. '/lib/modules/R/build') inside the root.

        Follows symlinks one hop at a time, treating absolute targets as relative
        to the root. Returns the resolved path, or None when any hop is missing
        (a dangling link) or the chain loops.
        """
        parts = [p for p in host_path.split("/") if p]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = self.root(*resolved, part)
            try:
                target = os.readlink(candidate)
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # not a link: a plain file or directory
                    resolved.append(part)
                    continue
                return None  # ENOENT, EACCES, ...: the chain cannot be followed
            hops += 1
            if hops > _MAX_SYMLINK_HOPS:
                return None
            target_parts = [p for p in target.split("/") if p]
            if target.startswith("/"):
                resolved = []
            parts = target_parts + parts
        path = self.root(*resolved)
        return Path(path) if os.path.lexists(path) else None


class NotRegularFile(OSError):
    """A FIFO, socket or device where a host file should be."""


def open_host_file(path: str | Path) -> BinaryIO:
    """Open a host file for reading, refusing anything but a regular file (proc and sys
    files are regular too): open() of a FIFO with no writer, or a tty, blocks forever, and
    would hang the scrape that reads it. Raises OSError as open() does, or NotRegularFile."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text(path: str | Path, limit: int = DEFAULT_READ_LIMIT) -> str:
    """Read at most `limit` bytes of a host file as text (undecodable bytes replaced).

    Raises OSError as open() does: callers decide whether a missing file is
    "no data" or a failure.
    """
    with open_host_file(path) as handle:
        data = handle.read(limit)
    return data.decode("utf-8", errors="replace")


def read_first_line(path: str | Path) -> str:
    return read_text(path, 4096).split("\n", 1)[0].strip()


_parsed: dict[tuple[str, object], tuple[tuple[int, int, int], object]] = {}


def parse_cached(path: str, parse, limit: int = DEFAULT_READ_LIMIT):
    """parse(text of path), computed again only when the file's inode, size or mtime changed.

    For regular files of the host tree (etc, opt): they rarely change, and some (the policy
    XML) cost more to parse than a whole scrape should. Not for proc or sys, whose files
    all look unchanged. Raises OSError as open() does, and whatever parse raises.
    """
    st = os.stat(path)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    key = (path, parse)
    cached = _parsed.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    value = parse(read_text(path, limit))
    _parsed[key] = (stamp, value)
    return value
