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
