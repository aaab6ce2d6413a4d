"""The one door to the host's files.

Every file the exporter reads is named relative to the host root, so the same
program reads a real host (`--path.rootfs /`), a container's view of it
(`--path.rootfs /host`) or an example tree. Absolute symlinks inside the tree
(`lib/modules/R/build -> /usr/src/kernels/R`) are resolved against the root, as
a chroot would, never against the exporter's own filesystem.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO, Optional

# Reads are capped: a host file that is suddenly huge must not cost a scrape its memory.
DEFAULT_READ_LIMIT = 1 << 20
_MAX_SYMLINK_HOPS = 40
# The exporter's own view of this kernel: the reference the configured procfs is held to.
_OWN_BOOT_ID = "/proc/sys/kernel/random/boot_id"

log = logging.getLogger("amp_exporter.host.paths")


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

    @functools.cached_property
    def procfs_is_live(self) -> bool:
        """True when procfs is a live procfs of this kernel boot and of this process's own
        PID namespace: then its PIDs are the kernel's answers about the processes we can
        reach ourselves (eBPF, the bpf() syscall, sock_diag), so those may be used.

        Decided once (the answer cannot change for a mount), by what the tree shows, never by
        which mount it is: two procfs mounts are two superblocks on current kernels, so the
        host's /proc seen at /host/proc in a container run with --pid=host is live although it
        is not the container's /proc. Three checks, all cheap reads:

        - PROCFS/self resolves to our own PID (os.getpid()). procfs answers `self` with the
          reader's PID in the procfs's own PID namespace: a procfs of a namespace we are not
          in has a dangling `self`, and a static tree (an example host) has none, or a fixed
          number.
        - the NSpid line of PROCFS/self/status is that PID alone. NSpid lists our PID in
          every namespace from the procfs's down to ours, so one entry means the procfs's
          namespace is ours, not an ancestor in which our PID happens to be the same number
          (the host's /proc mounted into a container without --pid=host, where our host PID
          is the container's PID by chance). Kernels before 4.1 print no NSpid: there the
          first check stands alone.
        - PROCFS/sys/kernel/random/boot_id equals our own /proc's: this kernel, this boot
          (every procfs of a kernel shows the same one), which a static tree with a
          look-alike `self` does not have.

        sock_diag needs nothing more: it answers for the network namespace of the socket
        that asks, with the kernel-wide socket inodes that PROCFS/PID/fd names, so with a
        live procfs the network collector only checks that a process shares our network
        namespace (PROCFS/PID/ns/net against PROCFS/self/ns/net) before trusting it.
        """
        live, why = _procfs_liveness(self._proc)
        log.debug("procfs liveness", extra={"procfs": self._proc, "live": live, "why": why})
        return live

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


def _procfs_liveness(procfs: str) -> tuple[bool, str]:
    """(whether procfs is live for this process, why): HostPaths.procfs_is_live."""
    pid = str(os.getpid())
    try:
        self_link = os.readlink(os.path.join(procfs, "self"))
    except OSError as exc:
        return False, f"no self link ({exc.strerror})"
    if self_link != pid:
        return False, f"self is {self_link!r}, not our PID {pid}"
    try:
        status = read_text(os.path.join(procfs, pid, "status"), 64 << 10)
        boot_id = read_first_line(os.path.join(procfs, "sys", "kernel", "random", "boot_id"))
        own_boot_id = read_first_line(_OWN_BOOT_ID)
    except OSError as exc:
        return False, f"cannot read {exc.filename} ({exc.strerror})"
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            if line.split()[1:] != [pid]:
                return False, f"another PID namespace (NSpid {' '.join(line.split()[1:])})"
            break
    if not boot_id or boot_id != own_boot_id:
        return False, "another kernel boot (boot_id differs)"
    return True, "our PID namespace, this boot"


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
