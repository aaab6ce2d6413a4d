"""The bpf() system call through ctypes: the kernel's own list of BPF objects.

Only what the exporter needs, without bcc: walking program and map IDs (a count of
what the whole host has loaded, as a cross-check of what the connector holds).
Needs CAP_SYS_ADMIN (or CAP_BPF and CAP_PERFMON); without it the kernel says EPERM.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from typing import Optional

SYSCALL_NUMBERS = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351}
BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12
_MAX_OBJECTS = 1 << 20


class _NextIdAttr(ctypes.Structure):
    _fields_ = [("start_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32),
                ("open_flags", ctypes.c_uint32), ("_pad", ctypes.c_uint8 * 116)]


_libc: Optional[ctypes.CDLL] = None


def _syscall(cmd: int, attr: ctypes.Structure) -> int:
    global _libc
    number = SYSCALL_NUMBERS.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"bpf() number unknown on {platform.machine()}")
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    result = _libc.syscall(number, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def count_ids(cmd: int) -> int:
    """How many objects of a kind are loaded (walks the IDs; raises OSError on EPERM)."""
    attr = _NextIdAttr()
    count = 0
    while count < _MAX_OBJECTS:
        try:
            _syscall(cmd, attr)
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # past the last ID
                return count
            raise
        count += 1
        attr.start_id = attr.next_id
    return count


def host_programs() -> int:
    return count_ids(BPF_PROG_GET_NEXT_ID)


def host_maps() -> int:
    return count_ids(BPF_MAP_GET_NEXT_ID)


# -- maps handed over by the loader -------------------------------------------------------

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4


class _MapElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("_pad0", ctypes.c_uint32),
                ("key", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("flags", ctypes.c_uint64), ("_pad", ctypes.c_uint8 * 96)]


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """How many slots a per-CPU map value has ('0-3,8-11' -> 8). Raises ValueError on
    anything else (and OSError as open() does)."""
    with open(path, errors="replace") as f:
        text = f.read().strip()
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if not 0 <= first <= last:
            raise ValueError(f"not a CPU list: {text[:60]!r}")
        count += last - first + 1
    return count


class PerCPUMap:
    """Read a per-CPU BPF map (array or hash) by its fd, with u64 values summed over CPUs."""

    def __init__(self, fd: int, key_size: int, cpus: int) -> None:
        self.fd = fd
        self.key_size = key_size
        self.cpus = cpus
        self._values = (ctypes.c_uint64 * cpus)()

    def lookup(self, key: bytes) -> Optional[int]:
        key_buf = ctypes.create_string_buffer(key, self.key_size)
        attr = _MapElemAttr(map_fd=self.fd, key=ctypes.addressof(key_buf),
                            value=ctypes.addressof(self._values))
        try:
            _syscall(BPF_MAP_LOOKUP_ELEM, attr)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return sum(self._values)

    def delete(self, key: bytes) -> None:
        key_buf = ctypes.create_string_buffer(key, self.key_size)
        try:
            _syscall(BPF_MAP_DELETE_ELEM, _MapElemAttr(map_fd=self.fd,
                                                       key=ctypes.addressof(key_buf)))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def keys(self, limit: int = _MAX_OBJECTS) -> list[bytes]:
        keys: list[bytes] = []
        current: Optional[ctypes.Array] = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while len(keys) < limit:
            attr = _MapElemAttr(map_fd=self.fd,
                                key=ctypes.addressof(current) if current is not None else 0,
                                value=ctypes.addressof(nxt))
            try:
                _syscall(BPF_MAP_GET_NEXT_KEY, attr)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    break
                raise
            keys.append(nxt.raw)
            current = ctypes.create_string_buffer(nxt.raw, self.key_size)
        return keys
