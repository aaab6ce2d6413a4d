"""The connector's TCP connections by state: independent evidence for `Connected`.

Through a live procfs (HostPaths.procfs_is_live: this boot, our PID namespace), for a
process in our own network namespace, the kernel is asked through sock_diag netlink
(amp_exporter.host.sockdiag) about the sockets the connector's processes hold, by their
inodes: each socket is found by a dump once, then by an exact lookup of its identity, so
a scrape's cost does not grow with the host's other sockets (and is nothing at all when
the connector holds no TCP socket). Elsewhere (an example tree, another namespace) the
process's own `proc/PID/net/tcp{,6}` tables are read instead.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

from amp_exporter.host import sockdiag
from amp_exporter.host.paths import read_text
from amp_exporter.registry import Collector, gauge, host_error, register

# include/net/tcp_states.h
TCP_STATES = {
    1: "established", 2: "syn_sent", 3: "syn_recv", 4: "fin_wait1", 5: "fin_wait2",
    6: "time_wait", 7: "close", 8: "close_wait", 9: "last_ack", 10: "listen", 11: "closing",
}
_TABLE_LIMIT = 32 << 20


def parse_proc_net_tcp(text: str) -> dict[int, int]:
    """proc/net/tcp -> {socket inode: state number}."""
    sockets = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            state, inode = int(fields[3], 16), int(fields[9])
        except ValueError:
            continue
        if inode:
            sockets[inode] = state
    return sockets


NAME = "network"
CONNECTIONS = gauge(NAME, "cisco_amp_tcp_connections",
                    "TCP sockets held by the connector process, by state.", ("process", "state"))
SOURCE = gauge(NAME, "amp_exporter_network_source",
               "1 for how TCP states were read: netlink (sock_diag) or procfs.", ("source",))


@register
class NetworkCollector(Collector):
    name = NAME
    help = "TCP connections of the connector's processes by state (sock_diag or proc/net)."

    def __init__(self, settings, shared) -> None:
        super().__init__(settings, shared)
        self._diag_lock = threading.Lock()
        self._tracker = sockdiag.TcpTracker()  # under _diag_lock

    def collect(self):
        snap = self.shared.processes.snapshot()
        family = CONNECTIONS.family()
        source = None
        counts: dict[tuple[str, str], int] = {}
        readable = [p for p in snap.processes if p.fds_readable]
        local = {p.pid for p in readable if self._same_netns(p.pid)}
        netlink: Optional[dict[int, int]] = None  # one look serves every process
        for proc in readable:
            if proc.pid in local:
                if netlink is None:
                    netlink = self._netlink_states(
                        {self.paths.proc(str(p.pid), "fd"): p.socket_inodes
                         for p in readable if p.pid in local})
                states, source = netlink, "netlink"
            else:
                states, source = self._procfs_states(proc.pid), "procfs"
            for inode in proc.socket_inodes:
                state = states.get(inode)
                if state is not None:
                    key = (proc.name, TCP_STATES.get(state, "unknown"))
                    counts[key] = counts.get(key, 0) + 1
            for name in ("established",):
                counts.setdefault((proc.name, name), 0)
        for (name, state), count in sorted(counts.items()):
            family.add_metric([name, state], float(count))
        src = SOURCE.family()
        for name in ("netlink", "procfs"):
            src.add_metric([name], 1.0 if name == source else 0.0)
        return [family, src]

    def _procfs_states(self, pid: int) -> dict[int, int]:
        states: dict[int, int] = {}
        for table in ("tcp", "tcp6"):
            for base in (self.paths.proc(str(pid), "net", table), self.paths.proc("net", table)):
                try:
                    states.update(parse_proc_net_tcp(read_text(base, _TABLE_LIMIT)))
                    break
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise host_error(exc, f"reading {base}") from exc
        return states

    def _same_netns(self, pid: int) -> bool:
        """Whether sock_diag, which answers for our own network namespace, covers the
        process: only through a live procfs (its PIDs are ours, HostPaths.procfs_is_live),
        and only when the process's ns/net is ours (same device and inode, namespaces(7))."""
        if not self.paths.procfs_is_live:
            return False
        try:
            theirs = os.stat(self.paths.proc(str(pid), "ns", "net"))
            ours = os.stat(self.paths.proc("self", "ns", "net"))
        except OSError:
            return False
        return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)

    def _netlink_states(self, held: dict[str, set[int]]) -> dict[int, int]:
        try:
            with self._diag_lock:
                return self._tracker.states(held)
        except OSError as exc:  # EPERM/EACCES are PermissionError: 'permission'
            raise host_error(exc, "sock_diag") from exc
