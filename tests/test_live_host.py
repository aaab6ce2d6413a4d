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
    """The stand-in daemon connects to a listener on loopback; sock_diag (pyroute2) sees it."""
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
