"""sock_diag by exact lookup, on this machine's kernel: sockets in every TCP state a process
can hold, looked up by the identity a dump showed, against the dump itself and against
pyroute2 (its dump, and its own exact requests); the tracker the network collector keeps
(one dump per new socket, exact lookups after, nothing at all without TCP sockets); and
the collector on a real stand-in connector process, counting netlink requests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest
from conftest import LIVE_BIN, REPO

from amp_exporter.host import sockdiag

TCP_STATES = {1: "established", 2: "syn_sent", 4: "fin_wait1", 5: "fin_wait2", 6: "time_wait",
              7: "close", 8: "close_wait", 9: "last_ack", 10: "listen", 11: "closing"}
FAMILIES = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))
SELF_FD = "/proc/self/fd"


def inode_of(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


def full_dump() -> dict[int, sockdiag.TcpSocket]:
    with sockdiag.Netlink() as nl:
        return {i: s for f, _ in FAMILIES for i, s in nl.dump(f).items()}


def wait_for(what, inodes: dict[str, int], timeout: float = 10) -> dict[int, sockdiag.TcpSocket]:
    """A full dump once every named socket shows the state its name says (WHAT: name ->
    state), so that state changes on loopback have settled."""
    deadline = time.monotonic() + timeout
    while True:
        dump = full_dump()
        wrong = {n: dump[i].state if i in dump else None for n, i in inodes.items()
                 if (dump[i].state if i in dump else None) != what[n]}
        if not wrong:
            return dump
        assert time.monotonic() < deadline, f"sockets not in their states: {wrong}"
        time.sleep(0.02)


def fill(sender: socket.socket) -> None:
    """Send until the peer's receive window and our send buffer are full: a FIN queued now
    stays queued behind the data while the peer does not read."""
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        for _ in range(100_000):
            sender.send(b"x" * 65536)
    sender.setblocking(True)


@contextlib.contextmanager
def every_state():
    """{name: socket} held by this process, in every TCP state a process can hold (for both
    families, and an IPv4 peer of a dual-stack listener), and {name: expected state}."""
    held: dict[str, socket.socket] = {}
    expected: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        def keep(name: str, s: socket.socket, state: int) -> socket.socket:
            held[name], expected[name] = stack.enter_context(s), state
            return s

        for family, host in FAMILIES:
            v = "6" if family == socket.AF_INET6 else "4"
            listener = keep(f"listen{v}", socket.socket(family), 10)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the peers inherit
            listener.bind((host, 0))
            listener.listen(64)
            addr = listener.getsockname()[:2]

            def pair(a: str, a_state: int, b: str, b_state: int, addr=addr, listener=listener):
                client = keep(a, socket.create_connection(addr), a_state)
                return client, keep(b, listener.accept()[0], b_state)

            pair(f"established{v}", 1, f"peer{v}", 1)
            # fin_wait2 / close_wait: one side shuts down its writing, and both keep the fd
            a, b = pair(f"fin_wait2_{v}", 5, f"close_wait{v}", 8)
            a.shutdown(socket.SHUT_WR)
            # fin_wait1: a FIN queued behind data the peer does not read
            a, b = pair(f"fin_wait1_{v}", 4, f"full{v}", 1)
            fill(a)
            a.shutdown(socket.SHUT_WR)
            # last_ack: the side in close_wait shuts down too, its FIN queued behind data
            a, b = pair(f"last_ack{v}", 9, f"fin_wait2b_{v}", 5)
            b.shutdown(socket.SHUT_WR)
            assert a.recv(1) == b""
            fill(a)
            a.shutdown(socket.SHUT_WR)
            # closing: both FINs queued behind data; one side reads all, the peer's FIN
            # arrives while its own is not acknowledged
            a, b = pair(f"closing{v}", 11, f"fin_wait2c_{v}", 5)
            fill(a)
            fill(b)
            a.shutdown(socket.SHUT_WR)
            b.shutdown(socket.SHUT_WR)
            a.settimeout(10)
            while a.recv(1 << 16):
                pass
            # syn_sent: the listener's accept queue is full, so the SYN is dropped
            full = keep(f"backlog0_{v}", socket.socket(family), 10)
            full.bind((host, 0))
            full.listen(0)  # one connection queued fills it
            keep(f"queued{v}", socket.create_connection(full.getsockname()[:2]), 1)
            s = keep(f"syn_sent{v}", socket.socket(family), 2)
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.connect(full.getsockname()[:2])
        dual = keep("listen_dual", socket.socket(socket.AF_INET6), 10)
        dual.bind(("::", 0))
        dual.listen()
        keep("mapped_client", socket.create_connection(("127.0.0.1", dual.getsockname()[1])), 1)
        keep("mapped_peer", dual.accept()[0], 1)
        yield held, expected


def pyroute2_sockets(inodes: set[int]) -> dict[int, dict]:
    from pyroute2 import DiagSocket

    found = {}
    with DiagSocket() as diag:
        diag.bind()
        for family, _ in FAMILIES:
            for msg in diag.get_sock_stats(family=family):
                if msg["idiag_inode"] in inodes:
                    found[msg["idiag_inode"]] = msg
    return found


def pyroute2_exact(msg: dict) -> list[dict]:
    """pyroute2's own exact request (no NLM_F_DUMP) for the socket its dump showed."""
    from pyroute2 import DiagSocket
    from pyroute2.netlink import NLM_F_REQUEST
    from pyroute2.netlink.diag import SOCK_DIAG_BY_FAMILY, inet_diag_req

    family = msg["idiag_family"]
    req = inet_diag_req()
    req["sdiag_family"], req["sdiag_protocol"] = family, socket.IPPROTO_TCP
    req["idiag_states"] = 0xFFFFFFFF
    for key in ("idiag_sport", "idiag_dport", "idiag_if", "idiag_cookie"):
        req[key] = msg[key]
    for key in ("idiag_src", "idiag_dst"):
        packed = socket.inet_pton(family, msg[key]).ljust(16, b"\0")
        req[key] = struct.unpack(">4I", packed)
    with DiagSocket() as diag:
        diag.bind()
        return list(diag.nlm_request(req, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST))


def test_exact_lookups_agree_with_a_dump_and_pyroute2_in_every_state():
    with every_state() as (held, expected):
        inodes = {name: inode_of(s) for name, s in held.items()}
        dump = wait_for(expected, inodes)
        theirs = pyroute2_sockets(set(inodes.values()))
        with sockdiag.Netlink() as nl:
            exact = nl.lookup(dump[i] for i in inodes.values())
        for name, inode in inodes.items():
            ours, their = dump[inode], theirs[inode]
            assert exact[inode] == ours, name  # state, family, the whole identity
            assert (their["idiag_state"], their["idiag_family"], their["idiag_cookie"]) == (
                ours.state, ours.family, ours.cookie), name
            assert (their["idiag_sport"], their["idiag_dport"]) == ours.ports, name
            assert their["idiag_if"] == ours.interface, name
            (again,) = pyroute2_exact(their)
            assert (again["idiag_inode"], again["idiag_state"]) == (inode, ours.state), name
        tracker = sockdiag.TcpTracker()
        held_fds = {SELF_FD: set(inodes.values())}
        before = sockdiag.counts()
        first = tracker.states(held_fds)
        middle = sockdiag.counts()
        second = tracker.states(held_fds)
        after = sockdiag.counts()
    want = {inodes[n]: state for n, state in expected.items()}
    assert first == second == want
    assert {TCP_STATES[s] for s in want.values()} == {
        "established", "syn_sent", "fin_wait1", "fin_wait2", "close_wait", "last_ack",
        "closing", "listen"}
    assert middle["dumps"] - before["dumps"] == 2 and middle["lookups"] == before["lookups"]
    assert after["dumps"] == middle["dumps"]
    assert after["lookups"] - middle["lookups"] == len(want)


def test_time_wait_belongs_to_no_process():
    """An active close leaves the connection in time_wait, in the kernel's tables but held
    by no fd (inode 0): a dump shows it, no process's inode names it, and an exact lookup of
    the socket's old identity finds the time-wait entry (same cookie), not the socket. So
    time_wait is never counted for a process, by a dump as by a lookup."""
    tracker = sockdiag.TcpTracker()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
        with peer:
            inode = inode_of(client)
            was = full_dump()[inode]
            assert tracker.states({SELF_FD: {inode}}) == {inode: 1}
            client.close()
            peer.close()
            with sockdiag.Netlink() as nl:
                deadline = time.monotonic() + 10
                while (found := nl.lookup([was])[inode]) is None or found.state != 6:
                    assert time.monotonic() < deadline, found
                    time.sleep(0.02)
    assert (found.inode, found.cookie, found.ports) == (0, was.cookie, was.ports)
    assert inode not in full_dump()
    # Asked for the inode again (as by a scrape that read the fds just before the close),
    # the tracker's lookup finds the time-wait entry: not the socket, so nothing is reported
    assert tracker.states({SELF_FD: {inode}}) == {}


def test_a_lookup_of_a_gone_or_forged_identity_finds_nothing():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        was = full_dump()[inode_of(listener)]
        forged = sockdiag.TcpSocket(was.family, was.state, was.inode,
                                    was.sockid[:40] + struct.pack("=Q", was.cookie ^ 1))
        with sockdiag.Netlink() as nl:
            assert nl.lookup([forged]) == {was.inode: None}
            assert nl.lookup([was]) == {was.inode: was}
    with sockdiag.Netlink() as nl:
        assert nl.lookup([was]) == {was.inode: None}


def test_many_lookups_in_one_call():
    """More exact requests than one batch: every answer is matched to its request."""
    with contextlib.ExitStack() as stack:
        listeners = [stack.enter_context(socket.socket()) for _ in range(100)]
        for s in listeners:
            s.bind(("127.0.0.1", 0))
            s.listen()
        dump = full_dump()
        wanted = [dump[inode_of(s)] for s in listeners]
        with sockdiag.Netlink() as nl:
            assert nl.lookup(wanted) == {s.inode: s for s in wanted}


def delta(before: dict[str, int]) -> dict[str, int]:
    now = sockdiag.counts()
    return {k: now[k] - before[k] for k in now}


def test_tracker_one_dump_per_new_socket_then_lookups():
    tracker = sockdiag.TcpTracker()
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        mine = {inode_of(listener)}
        before = sockdiag.counts()
        assert tracker.states({SELF_FD: mine}) == {inode_of(listener): 10}
        assert delta(before) == {"opened": 1, "dumps": 1, "lookups": 0}
        before = sockdiag.counts()
        assert tracker.states({SELF_FD: mine}) == {inode_of(listener): 10}
        assert delta(before) == {"opened": 1, "dumps": 0, "lookups": 1}
        # A new IPv6 socket (to an IPv4-mapped address): one dump, of its own family; the
        # IPv4 one is looked up
        client = stack.enter_context(socket.socket(socket.AF_INET6))
        client.connect(("::ffff:127.0.0.1", listener.getsockname()[1]))
        peer = stack.enter_context(listener.accept()[0])
        mine.add(inode_of(client))
        before = sockdiag.counts()
        states = tracker.states({SELF_FD: mine})
        assert delta(before) == {"opened": 1, "dumps": 1, "lookups": 1}
        assert states == {inode_of(listener): 10, inode_of(client): 1}
        # The listener closes: forgotten, nothing asked about it
        gone = inode_of(listener)
        listener.close()
        mine.discard(gone)
        before = sockdiag.counts()
        assert tracker.states({SELF_FD: mine}) == {inode_of(client): 1}
        assert delta(before) == {"opened": 1, "dumps": 0, "lookups": 1}
        assert set(tracker._known) == mine
        # The peer shuts its side down: close_wait, seen by the lookup alone
        peer.shutdown(socket.SHUT_WR)
        before = sockdiag.counts()
        deadline = time.monotonic() + 10
        while tracker.states({SELF_FD: mine}) != {inode_of(client): 8}:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert delta(before)["dumps"] == 0


def test_tracker_no_netlink_without_tcp_sockets():
    tracker = sockdiag.TcpTracker()
    before = sockdiag.counts()
    assert tracker.states({}) == {}
    assert tracker.states({SELF_FD: set()}) == {}
    with socket.socket(socket.AF_UNIX) as unix, socket.socket(type=socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp6:
        others = {inode_of(unix), inode_of(udp), inode_of(udp6)}
        for _ in range(3):
            assert tracker.states({SELF_FD: others}) == {}
    assert delta(before) == {"opened": 0, "dumps": 0, "lookups": 0}


def test_tracker_follows_a_tcp_socket_until_it_is_in_the_tables():
    """A TCP socket neither connected nor listening is in no table an exact lookup reads (a
    dump shows a bound one, state close, on kernels that dump bound-only sockets): the
    tracker dumps for it while it stays so, and reports what the dump reports, then looks it
    up once it listens."""
    tracker = sockdiag.TcpTracker()
    with socket.socket() as s:
        mine = {SELF_FD: {inode_of(s)}}
        assert tracker.states(mine) == {}
        s.bind(("127.0.0.1", 0))
        dumped = {i: d.state for i, d in full_dump().items() if i == inode_of(s)}
        assert dumped in ({}, {inode_of(s): 7})
        before = sockdiag.counts()
        assert tracker.states(mine) == dumped
        # one dump, of its family alone (an IPv4 socket is in no IPv6 dump)
        assert delta(before) == {"opened": 1, "dumps": 1, "lookups": 0}
        s.listen()
        assert tracker.states(mine) == {inode_of(s): 10}
        before = sockdiag.counts()
        assert tracker.states(mine) == {inode_of(s): 10}
        assert delta(before) == {"opened": 1, "dumps": 0, "lookups": 1}


def test_tracker_after_a_reset_and_a_refused_connect():
    """An established socket reset by its peer leaves the tables while its fd stays: the
    lookup misses, and the tracker says what a full dump says. A socket whose connect() was
    refused may connect again: found once it does."""
    tracker = sockdiag.TcpTracker()
    with socket.socket() as listener, socket.socket() as client, socket.socket() as retry:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.connect(listener.getsockname())
        mine = {SELF_FD: {inode_of(client)}}
        assert tracker.states(mine) == {inode_of(client): 1}
        peer, _ = listener.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # RST
        with pytest.raises(ConnectionResetError):
            client.recv(1)
        for _ in range(2):
            expected = {i: d.state for i, d in full_dump().items() if i == inode_of(client)}
            assert tracker.states(mine) == expected

        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            nobody = closed.getsockname()  # a port no one listens on
        with pytest.raises(ConnectionRefusedError):
            retry.connect(nobody)
        mine = {SELF_FD: {inode_of(retry)}}
        assert tracker.states(mine) == {}
        retry.connect(listener.getsockname())
        assert tracker.states(mine) == {inode_of(retry): 1}
        before = sockdiag.counts()
        assert tracker.states(mine) == {inode_of(retry): 1}
        assert delta(before) == {"opened": 1, "dumps": 0, "lookups": 1}


def test_tracker_an_ipv6_socket_turned_ipv4():
    """IPV6_ADDRFORM turns a TCPv6 socket connected to a mapped address into an IPv4 one
    (its protocol name stays TCPv6): the lookup by its IPv6 identity finds it as IPv4, and
    a tracker new to it finds it in the IPv4 dump after the IPv6 one."""
    tracker = sockdiag.TcpTracker()
    with socket.socket() as listener, socket.socket(socket.AF_INET6) as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client.connect(("::ffff:127.0.0.1", listener.getsockname()[1]))
        mine = {SELF_FD: {inode_of(client)}}
        assert tracker.states(mine) == {inode_of(client): 1}
        client.setsockopt(socket.IPPROTO_IPV6, 1, socket.AF_INET)  # IPV6_ADDRFORM
        with sockdiag.Netlink() as nl:
            assert inode_of(client) in nl.dump(socket.AF_INET)
        for _ in range(2):
            before = sockdiag.counts()
            assert tracker.states(mine) == {inode_of(client): 1}
            assert delta(before) == {"opened": 1, "dumps": 0, "lookups": 1}
        assert tracker._known[inode_of(client)].family == socket.AF_INET
        before = sockdiag.counts()
        assert sockdiag.TcpTracker().states(mine) == {inode_of(client): 1}
        assert delta(before) == {"opened": 1, "dumps": 2, "lookups": 0}


def test_tracker_reuseport_listeners_the_lookup_does_not_pick():
    """Two SO_REUSEPORT listeners share an address: the kernel's lookup picks one of them,
    so the other's exact lookup misses. Both are reported as a dump reports them, and the
    one missed is not looked up again."""
    tracker = sockdiag.TcpTracker()
    with socket.socket() as a, socket.socket() as b:
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        a.bind(("127.0.0.1", 0))
        b.bind(a.getsockname())
        a.listen()
        b.listen()
        mine = {SELF_FD: {inode_of(a), inode_of(b)}}
        want = {inode_of(a): 10, inode_of(b): 10}
        for _ in range(3):
            assert tracker.states(mine) == want
        before = sockdiag.counts()
        assert tracker.states(mine) == want
        assert delta(before)["lookups"] <= 1


# -- the collector, on a real stand-in connector process ------------------------------------
#
# Netlink requests are counted for the whole exporter, and the exporter sees every
# connector-like process of its PID namespace (a benchmark may run its own on this
# machine). So the exporter and the stand-in run in a PID namespace of their own, with its
# own procfs (live there); the network namespace is this machine's.

STAND_IN = r"""
import os, socket, sys
held = {}
print("ready", flush=True)
for line in iter(sys.stdin.readline, ""):
    cmd, *args = line.split()
    if cmd == "close":
        held.pop(int(args[0])).close()
        print("closed", flush=True)
        continue
    if cmd == "connect":
        s = socket.create_connection((args[0], int(args[1])))
    elif cmd == "listen":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
    elif cmd == "unix":
        s = socket.socket(socket.AF_UNIX)
    elif cmd == "udp":
        s = socket.socket(type=socket.SOCK_DGRAM)
    held[os.fstat(s.fileno()).st_ino] = s
    print(os.fstat(s.fileno()).st_ino, flush=True)
"""

SCENARIO = r"""
import json, os, socket, subprocess, sys
from prometheus_client.parser import text_string_to_metric_families
from amp_exporter.cli import build_parser, exposition, make_exporter
from amp_exporter.host import sockdiag

binary, stand_in, name = sys.argv[1], sys.argv[2], os.path.basename(sys.argv[1])
TCP_STATES = {int(k): v for k, v in json.loads(sys.argv[3]).items()}


def by_today(pid):
    # What the collector reported before exact lookups: a full dump of both families,
    # filtered to the process's socket inodes.
    states = sockdiag.tcp_states()
    fd_dir = f"/proc/{pid}/fd"
    counts = {"established": 0}
    for fd in os.listdir(fd_dir):
        target = os.readlink(f"{fd_dir}/{fd}")
        if target.startswith("socket:[") and int(target[8:-1]) in states:
            name = TCP_STATES[states[int(target[8:-1])]]
            counts[name] = counts.get(name, 0) + 1
    return counts


daemon = subprocess.Popen([binary, "-c", stand_in], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
assert daemon.stdout.readline() == "ready\n"

def do(*command):
    daemon.stdin.write(" ".join(map(str, command)) + "\n")
    daemon.stdin.flush()
    return daemon.stdout.readline().strip()

exporter = make_exporter(build_parser().parse_args(
    ["textfile", "--output", "-", "--collector.disable-defaults", "--collector.network"]))
steps = []

def look(step):
    before = sockdiag.counts()
    text = exposition(exporter).decode()
    after = sockdiag.counts()
    samples = [x for f in text_string_to_metric_families(text) for x in f.samples]
    steps.append({
        "step": step,
        "success": {x.labels["collector"]: x.value for x in samples
                    if x.name == "amp_exporter_scrape_collector_success"},
        "netlink": [x.value for x in samples if x.name == "amp_exporter_network_source"
                    and x.labels["source"] == "netlink"],
        "reported": {x.labels["state"]: int(x.value) for x in samples
                     if x.name == "cisco_amp_tcp_connections" and x.labels["process"] == name},
        "today": by_today(daemon.pid),
        "asked": {k: after[k] - before[k] for k in after},
        "known": sorted(exporter.collectors[0]._tracker._known),
    })

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
listener6 = socket.socket(socket.AF_INET6)
listener6.bind(("::1", 0))
listener6.listen()
look("no socket")
do("unix")
do("udp")
look("not tcp")
look("not tcp again")
first = int(do("connect", "127.0.0.1", listener.getsockname()[1]))
peer1 = listener.accept()[0]
look("new connection")
look("again")
do("listen")
look("new listener")
second = int(do("connect", "::1", listener6.getsockname()[1]))
peer2 = listener6.accept()[0]
look("new ipv6 connection")
look("again, three")
old = sockdiag.Netlink().dump(socket.AF_INET)[first]
assert do("close", first) == "closed"  # an active close: time_wait, held by no one
peer1.close()
look("first closed")
with sockdiag.Netlink() as nl:
    found = nl.lookup([old])[first]
steps.append({"first": first, "second": second,
              "after close": None if found is None else [found.inode, found.state]})
exporter.close()
daemon.kill()
print(json.dumps(steps))
"""


def test_collector_asks_for_the_connectors_sockets_exactly(live_connector):
    if not shutil.which("unshare"):
        pytest.skip("util-linux unshare is needed")
    live_connector("ampnettest", sys.executable, "-c", "pass")  # installs the binary
    result = subprocess.run(
        ["unshare", "-m", "-p", "--fork", "--kill-child", "--mount-proc",
         sys.executable, "-c", SCENARIO, str(LIVE_BIN / "ampnettest"), STAND_IN,
         json.dumps(TCP_STATES)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    *steps, last = json.loads(result.stdout)
    first, second = last["first"], last["second"]
    for step in steps:
        assert step["success"] == {"network": 1}, step
        assert step["netlink"] == [1], step
        assert step["reported"] == step["today"], step  # the values of a full dump
    none = {"opened": 0, "dumps": 0, "lookups": 0}

    def asked(dumps: int, lookups: int) -> dict[str, int]:
        return {"opened": 1, "dumps": dumps, "lookups": lookups}

    assert [(s["step"], s["reported"], s["asked"]) for s in steps] == [
        # no socket, then only sockets that are not TCP: no netlink at all
        ("no socket", {"established": 0}, none),
        ("not tcp", {"established": 0}, none),
        ("not tcp again", {"established": 0}, none),
        # a connection: one dump to learn it, then one exact lookup per scrape
        ("new connection", {"established": 1}, asked(1, 0)),
        ("again", {"established": 1}, asked(0, 1)),
        # a new listener: one dump (its family's, which covers the connection too)
        ("new listener", {"established": 1, "listen": 1}, asked(1, 0)),
        # a new IPv6 connection: one dump of IPv6, the two IPv4 sockets looked up
        ("new ipv6 connection", {"established": 2, "listen": 1}, asked(1, 2)),
        ("again, three", {"established": 2, "listen": 1}, asked(0, 3)),
        # the first connection closed: it drops out, no dump, no time_wait reported
        ("first closed", {"established": 1, "listen": 1}, asked(0, 2)),
    ]
    assert first in steps[-2]["known"] and first not in steps[-1]["known"]
    assert second in steps[-1]["known"] and len(steps[-1]["known"]) == 2
    # what became of it: the time-wait entry with its identity, held by no process
    assert last["after close"] in (None, [0, 6])
