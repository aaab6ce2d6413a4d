"""TCP socket states from the kernel's sock_diag netlink interface (linux/inet_diag.h).

pyroute2 speaks this too, but importing it costs ~24 MiB of resident memory and 0.2 s
(its package init loads every protocol it knows): more than the rest of the exporter.
We need one request and two fields of the answer, so this module speaks the stable
kernel ABI directly: an INET_DIAG dump per address family, reading each socket's state
and inode. tests/test_live_host.py checks it against pyroute2 on this machine's kernel.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
ALL_STATES = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid (48 bytes)
_REQUEST = struct.Struct("=BBBxI48x")
# inet_diag_msg: family, state, timer, retrans, sockid (48), expires, rqueue, wqueue, uid,
# inode
_MSG = struct.Struct("=BBBB48xIIIII")
_MAX_MESSAGES = 10_000_000  # a bound on a dump, far above any real host's socket count


class SockDiagError(OSError):
    """The kernel refused or garbled the dump."""


def _request(family: int, seq: int) -> bytes:
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, ALL_STATES)
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                            NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return header + body


def parse_messages(data: bytes, states: dict[int, int]) -> bool:
    """Add {inode: state} from one netlink datagram; True once the dump is done.
    Raises SockDiagError on an error message or a malformed one."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise SockDiagError(f"malformed netlink message (length {length})")
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR:
            errno = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
            raise SockDiagError(errno, f"sock_diag: {os.strerror(errno)}")
        if kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSGHDR.size + _MSG.size:
            _family, state, *_rest, inode = _MSG.unpack_from(data, offset + _NLMSGHDR.size)
            if inode:
                states[inode] = state
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return False


def tcp_states() -> dict[int, int]:
    """{socket inode: TCP state number} for every TCP socket of this network namespace."""
    states: dict[int, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(5)
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            sock.send(_request(family, seq))
            for _ in range(_MAX_MESSAGES):
                if parse_messages(sock.recv(1 << 16), states):
                    break
    return states
