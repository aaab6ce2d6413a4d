"""The exporter on this machine's real /proc and kernel: real processes holding real BPF
objects, found through their fds, and the bpf() syscall cross-check."""

from __future__ import annotations

import sys

from test_restarts import scrape

from amp_exporter.cli import build_parser, make_exporter


def test_bpf_fds_of_a_real_process_on_this_kernel(live_connector):
    daemon = live_connector("ampdaemon", sys.executable, "-m", "tests.bpfload", "600")
    assert daemon.stdout.readline().startswith("loaded")
    live_connector("ampscansvc")
    args = build_parser().parse_args(["textfile", "--output", "-", "--collector.disable-defaults",
                                      "--collector.bpf", "--collector.processes",
                                      "--collector.network"])
    exporter = make_exporter(args)
    try:
        s = scrape(exporter)
        assert s.success() == {"bpf": 1, "processes": 1, "network": 1}
        assert s.value("cisco_amp_bpf_programs", process="ampdaemon") == 1
        assert s.value("cisco_amp_bpf_maps", process="ampdaemon") == 1
        assert s.value("cisco_amp_bpf_programs_by_type", process="ampdaemon",
                       type="socket_filter") == 1
        assert s.value("cisco_amp_bpf_programs", process="ampscansvc") == 0
        assert s.value("cisco_amp_host_bpf_programs") >= 1
        assert s.value("cisco_amp_host_bpf_maps") >= 1
        assert s.value("cisco_amp_process_threads", process="ampdaemon") >= 1
    finally:
        exporter.close()


def test_tcp_states_through_netlink(live_connector):
    """The stand-in daemon connects to a listener on loopback; sock_diag sees it."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (f"import socket,time; s=socket.create_connection(('127.0.0.1',{port})); "
                "print('connected', flush=True); time.sleep(600)")
        daemon = live_connector("ampdaemon", sys.executable, "-c", code)
        assert daemon.stdout.readline().startswith("connected")
        peer, _ = listener.accept()
        with peer:
            args = build_parser().parse_args(["textfile", "--output", "-",
                                              "--collector.disable-defaults",
                                              "--collector.network"])
            exporter = make_exporter(args)
            try:
                s = scrape(exporter)
            finally:
                exporter.close()
    assert s.success() == {"network": 1}
    assert s.value("amp_exporter_network_source", source="netlink") == 1
    assert s.value("cisco_amp_tcp_connections", process="ampdaemon", state="established") == 1


def test_sockdiag_agrees_with_pyroute2():
    """Our sock_diag reader against pyroute2's, on this kernel, with sockets in several
    states and more of them than one netlink datagram holds."""
    import socket

    from pyroute2 import DiagSocket

    from amp_exporter.host import sockdiag

    held = []
    try:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            for _ in range(150):
                listener = socket.socket(family)
                listener.bind((host, 0))
                listener.listen()
                client = socket.create_connection(listener.getsockname()[:2])
                held += [listener, client]
            half = socket.create_connection(listener.getsockname()[:2])
            peer, _ = listener.accept()
            peer.close()  # the client is left in close_wait
            held.append(half)
        ours = sockdiag.tcp_states()
        theirs = {}
        with DiagSocket() as diag:
            diag.bind()
            for family in (socket.AF_INET, socket.AF_INET6):
                for msg in diag.get_sock_stats(family=family):
                    if msg.get("idiag_inode"):
                        theirs[msg["idiag_inode"]] = msg["idiag_state"]
    finally:
        for s in held:
            s.close()
    assert len(ours) >= 600
    assert ours == theirs
    assert {1, 8, 10} <= set(ours.values())  # established, close_wait, listen


def test_sockdiag_errors_are_sockdiag_errors():
    import pytest

    from amp_exporter.host import sockdiag

    states: dict[int, int] = {}
    error = sockdiag._NLMSGHDR.pack(20, sockdiag.NLMSG_ERROR, 0, 1, 0) + (-13).to_bytes(
        4, "little", signed=True)
    with pytest.raises(sockdiag.SockDiagError, match="Permission denied"):
        sockdiag.parse_messages(error, states)
    with pytest.raises(sockdiag.SockDiagError, match="malformed"):
        sockdiag.parse_messages(sockdiag._NLMSGHDR.pack(4000, 20, 0, 1, 0), states)
    done = sockdiag._NLMSGHDR.pack(16, sockdiag.NLMSG_DONE, 0, 1, 0)
    assert sockdiag.parse_messages(done, states) is True and states == {}
