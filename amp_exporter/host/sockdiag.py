"""TCP socket states from the kernel's sock_diag netlink interface (linux/inet_diag.h).

pyroute2 speaks this too, but importing it costs ~24 MiB of resident memory and 0.2 s
(its package init loads every protocol it knows): more than the rest of the exporter.
We need two requests and a few fields of the answer, so this module speaks the stable
kernel ABI directly. tests/test_live_host.py and tests/test_sockdiag_exact.py check it
against pyroute2 on this machine's kernel.

A dump (NLM_F_DUMP) walks every bucket of the kernel's TCP hash table, however few
sockets it holds: ~10 ms per address family on a host with 262,144 buckets, more with
more sockets. An exact request (no NLM_F_DUMP) names one socket by the inet_diag_sockid a
dump showed for it (ports, addresses, interface, cookie) and is answered by one hash
lookup, or ENOENT once that socket is gone. TcpTracker uses both: the connector's socket
inodes come from its fds; an inode is dumped for once to learn its identity, then
looked up exactly on every later call.
"""

from __future__ import annotations

import errno as errnos
import os
import socket
import struct
import threading
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Optional, Union

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
ALL_STATES = 0xFFFFFFFF
TCP_CLOSE = 7  # include/net/tcp_states.h
FAMILIES = (socket.AF_INET, socket.AF_INET6)
# sockfs names each socket's inode after its protocol (sk_prot_creator->name), readable
# through any fd as this extended attribute (net/socket.c).
PROTOCOL_XATTR = "system.sockprotoname"
TCP_PROTOCOLS = {"TCP": socket.AF_INET, "TCPv6": socket.AF_INET6}

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 bytes)
_REQUEST = struct.Struct("=BBBxI48s")
# inet_diag_msg: family, state, timer, retrans, sockid (48, read apart), expires, rqueue,
# wqueue, uid, inode
_MSG = struct.Struct("=BBBB48xIIIII")
_MSG_SOCKID = 4  # where inet_diag_sockid starts in inet_diag_msg
# inet_diag_sockid: sport, dport (big endian), src[4], dst[4], if, cookie[2]
_SOCKID = struct.Struct(">HH16s16sI8s")
_NO_SOCKID = bytes(48)
_MAX_MESSAGES = 10_000_000  # a bound on a dump, far above any real host's socket count
_LOOKUP_BATCH = 32  # exact requests in flight: their answers must fit the receive buffer
_TIMEOUT = 5.0


class SockDiagError(OSError):
    """The kernel refused or garbled the answer."""


@dataclass(frozen=True)
class TcpSocket:
    """One TCP socket as sock_diag showed it."""

    family: int
    state: int
    inode: int  # 0: no process holds it (time-wait, a request, an orphan)
    sockid: bytes  # inet_diag_sockid exactly as the kernel gave it, to ask for it again

    @property
    def ports(self) -> tuple[int, int]:
        sport, dport, *_ = _SOCKID.unpack(self.sockid)
        return sport, dport

    @property
    def interface(self) -> int:
        return struct.unpack_from("=I", self.sockid, 36)[0]

    @property
    def cookie(self) -> int:
        return struct.unpack_from("=Q", self.sockid, 40)[0]


# Netlink use, for tests and benchmarks: sockets opened, dump and exact requests sent.
_counts = {"opened": 0, "dumps": 0, "lookups": 0}
_counts_lock = threading.Lock()


def counts() -> dict[str, int]:
    """How many netlink sockets this module opened, and dump / exact requests it sent."""
    with _counts_lock:
        return dict(_counts)


def _count(what: str, n: int = 1) -> None:
    with _counts_lock:
        _counts[what] += n


def _header(length: int, flags: int, seq: int) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + length, SOCK_DIAG_BY_FAMILY, flags, seq, 0)


def _dump_request(family: int, seq: int) -> bytes:
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, ALL_STATES, _NO_SOCKID)
    return _header(len(body), NLM_F_REQUEST | NLM_F_DUMP, seq) + body


def _exact_request(sock: TcpSocket, seq: int) -> bytes:
    body = _REQUEST.pack(sock.family, socket.IPPROTO_TCP, 0, ALL_STATES, sock.sockid)
    return _header(len(body), NLM_F_REQUEST, seq) + body


def _messages(data: bytes) -> Iterator[tuple[int, int, Union[TcpSocket, int, None]]]:
    """(seq, type, what) for each message of one netlink datagram: a TcpSocket, the
    errno of an error message (0 for an ACK), None for the end of a dump (or a message
    of no interest). Raises SockDiagError on a malformed message."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise SockDiagError(f"malformed netlink message (length {length})")
        body = offset + _NLMSGHDR.size
        if kind == NLMSG_ERROR:
            if length < _NLMSGHDR.size + 4:
                raise SockDiagError(f"malformed netlink error (length {length})")
            yield seq, kind, -struct.unpack_from("=i", data, body)[0]
        elif kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSGHDR.size + _MSG.size:
            family, state, *_rest, inode = _MSG.unpack_from(data, body)
            sockid = data[body + _MSG_SOCKID:body + _MSG_SOCKID + _SOCKID.size]
            yield seq, kind, TcpSocket(family, state, inode, sockid)
        else:
            yield seq, kind, None
        offset += (length + 3) & ~3  # NLMSG_ALIGN


def _error(errno: int) -> SockDiagError:
    return SockDiagError(errno, f"sock_diag: {os.strerror(errno)}")


def parse_dump(data: bytes, found: dict[int, TcpSocket], seq: Optional[int] = None,
               wanted: Optional[Container[int]] = None) -> bool:
    """Add {inode: socket} from one datagram of a dump (only answers to SEQ, if given:
    a late answer to an earlier request is skipped; only the inodes in WANTED, if given);
    True once the dump is done. Raises SockDiagError on an error message or a malformed
    one."""
    for got, kind, what in _messages(data):
        if seq is not None and got != seq:
            continue
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR:
            raise _error(what)
        if isinstance(what, TcpSocket) and what.inode and (
                wanted is None or what.inode in wanted):
            found[what.inode] = what
    return False


class Netlink:
    """One NETLINK_SOCK_DIAG socket, opened on first use (a `with` block closes it)."""

    def __init__(self) -> None:
        self._sock: Optional[socket.socket] = None
        self._seq = 0

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
            _count("opened")
            self._sock.settimeout(_TIMEOUT)
        return self._sock

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFFFFFF + 1
        return self._seq

    def dump(self, family: int,
             wanted: Optional[Container[int]] = None) -> dict[int, TcpSocket]:
        """{inode: socket} for every TCP socket of FAMILY a process holds, in this
        network namespace (one walk of the whole hash table), or only for the inodes in
        WANTED: on a host of 10,000 sockets, keeping them all held ~2 MiB for good."""
        sock, seq = self._socket(), self._next_seq()
        sock.send(_dump_request(family, seq))
        _count("dumps")
        found: dict[int, TcpSocket] = {}
        for _ in range(_MAX_MESSAGES):
            if parse_dump(sock.recv(1 << 16), found, seq, wanted):
                return found
        raise SockDiagError(f"sock_diag dump of family {family} did not end")

    def lookup(self, sockets: Iterable[TcpSocket]) -> dict[int, Optional[TcpSocket]]:
        """{inode asked for: the socket the kernel found by its identity, or None when none
        is found (ENOENT; ESTALE: the cookie names another socket)}: one hash lookup each."""
        wanted = list(sockets)
        found: dict[int, Optional[TcpSocket]] = {}
        sock = self._socket() if wanted else None
        for start in range(0, len(wanted), _LOOKUP_BATCH):
            pending = {self._next_seq(): s for s in wanted[start:start + _LOOKUP_BATCH]}
            sock.send(b"".join(_exact_request(s, seq) for seq, s in pending.items()))
            _count("lookups", len(pending))
            while pending:
                for seq, kind, what in _messages(sock.recv(1 << 16)):
                    asked = pending.pop(seq, None)
                    if asked is None:
                        continue
                    if isinstance(what, TcpSocket):
                        found[asked.inode] = what
                    elif kind == NLMSG_ERROR and what in (errnos.ENOENT, errnos.ESTALE):
                        found[asked.inode] = None
                    elif kind == NLMSG_ERROR:
                        raise _error(what)
                    else:
                        raise SockDiagError(f"unexpected sock_diag answer (type {kind})")
        return found


def tcp_states() -> dict[int, int]:
    """{socket inode: TCP state number} for every TCP socket of this network namespace."""
    with Netlink() as nl:
        return {inode: s.state for family in FAMILIES for inode, s in nl.dump(family).items()}


def protocol_names(fd_dir: str, inodes: Iterable[int]) -> dict[int, Optional[str]]:
    """{inode: protocol name ('TCP', 'TCPv6', 'UNIX-STREAM', 'UDP', 'NETLINK', ...), or None
    where the kernel would not say} for those of INODES a socket fd in FD_DIR (a
    proc/PID/fd) holds; an inode no fd holds (any longer) is left out."""
    wanted = set(inodes)
    names: dict[int, Optional[str]] = {}
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return names
    for fd in fds:
        if not wanted:
            break
        path = os.path.join(fd_dir, fd)
        try:
            target = os.readlink(path)
            inode = int(target[8:-1]) if target.startswith("socket:[") else 0
        except (OSError, ValueError):
            continue
        if inode not in wanted:
            continue
        wanted.discard(inode)
        try:
            names[inode] = os.getxattr(path, PROTOCOL_XATTR).rstrip(b"\0").decode()
        except (OSError, UnicodeDecodeError):
            names[inode] = None
    return names


@dataclass
class _Known:
    family: Optional[int]  # from the protocol name, then from where a dump found it
    sock: Optional[TcpSocket] = None  # the last answer about it; None: not in the tables
    inexact: Optional[bytes] = None  # a sockid an exact lookup missed though a dump showed it

    @property
    def families(self) -> tuple[int, ...]:
        """The families a dump may show it in: an IPv6 socket turns into an IPv4 one when
        connected to a mapped address and asked to (IPV6_ADDRFORM), never back."""
        if self.family == socket.AF_INET:
            return (socket.AF_INET,)
        return (socket.AF_INET6, socket.AF_INET) if self.family else FAMILIES

    @property
    def exact(self) -> bool:
        """Whether an exact lookup can find it: it is in the kernel's hash tables (a
        bound-only socket, state close, is shown by a dump but in no table), and a
        lookup did not miss it before (a SO_REUSEPORT listener the lookup does not pick)."""
        return (self.sock is not None and self.sock.state != TCP_CLOSE
                and self.sock.sockid != self.inexact)


class TcpTracker:
    """{inode: TCP state} for the sockets some processes hold, remembered between calls.

    Each socket inode is classified once by its protocol name (through an fd holding
    it): TCP and TCPv6 sockets are followed, any other is left alone for as long as it
    is held. A TCP socket is found by a dump of its family once, then by exact lookups;
    it goes back to dumps only while the kernel cannot look it up (not yet connected or
    listening, shut down, a reuseport listener). Held inodes only: one that is no longer
    held is forgotten. Not thread-safe: callers serialize.
    """

    def __init__(self) -> None:
        self._known: dict[int, _Known] = {}
        self._other: set[int] = set()  # held sockets that are not TCP

    def states(self, held: Mapping[str, Iterable[int]]) -> dict[int, int]:
        """HELD: {proc/PID/fd directory: socket inodes that process holds}. Returns
        {inode: TCP state} for those of them the kernel shows (a TCP socket neither
        connected nor listening may be absent, as from a dump). No netlink at all when
        none of them is TCP. Raises OSError (SockDiagError) when the kernel will not say."""
        wanted = {inode for inodes in held.values() for inode in inodes}
        self._known = {i: k for i, k in self._known.items() if i in wanted}
        self._other &= wanted
        new = wanted - self._known.keys() - self._other
        if new:
            self._classify(held, new)
        if not self._known:
            return {}
        with Netlink() as nl:
            return self._resolve(nl)

    def _classify(self, held: Mapping[str, Iterable[int]], new: set[int]) -> None:
        for fd_dir, inodes in held.items():
            mine = new.intersection(inodes)
            if not mine:
                continue
            for inode, name in protocol_names(fd_dir, mine).items():
                new.discard(inode)
                if name is None:  # unknown: looked for in both families
                    self._known[inode] = _Known(None)
                elif name in TCP_PROTOCOLS:
                    self._known[inode] = _Known(TCP_PROTOCOLS[name])
                else:
                    self._other.add(inode)
            if not new:
                break
        # Inodes left in NEW no fd holds any more: closed since the fds were read.

    def _resolve(self, nl: Netlink) -> dict[int, int]:
        known = self._known
        states: dict[int, int] = {}
        dumped: set[int] = set()
        missed: set[int] = set()  # exact lookups that found nothing this time

        def dump(family: int) -> None:
            dumped.add(family)
            found = nl.dump(family, known)
            for inode, k in known.items():
                s = found.get(inode)
                if s is not None:
                    if inode in missed and k.sock is not None and k.sock.sockid == s.sockid:
                        k.inexact = s.sockid
                    k.family, k.sock = family, s
                    states[inode] = s.state
                elif k.family == family and inode not in states:
                    k.sock = None

        # The families of the sockets an exact lookup cannot find (new ones first of all)
        for family in FAMILIES:
            if any(k.family == family and not k.exact for k in known.values()):
                dump(family)
        # Everything else by its identity
        ask = [k.sock for i, k in known.items() if i not in states and k.exact]
        for inode, s in nl.lookup(ask).items():
            if s is not None and s.inode == inode:
                known[inode].family, known[inode].sock = s.family, s
                states[inode] = s.state
            else:  # gone from the tables (closed, reset, disconnected) or another socket
                missed.add(inode)
        # Whatever is still not found: the families it may be in not dumped yet, its own
        # first (a socket neither connected nor listening is in none: dumped for while so)
        while True:
            left = [k for i, k in known.items() if i not in states]
            todo = [f for f in FAMILIES if f not in dumped and any(f in k.families for k in left)]
            if not todo:
                break
            todo.sort(key=lambda f: not any(k.family == f for k in left))
            dump(todo[0])
        return states
