"""The exporter on this machine's real /proc and kernel: real processes holding real BPF
objects, found through their fds, and the bpf() syscall cross-check."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LIVE_BIN, REPO, Scrape, parse_exposition
from test_events import wait_for_ebpf
from test_http import Server
from test_restarts import scrape

from amp_exporter.cli import build_parser, make_exporter
from amp_exporter.host.paths import HostPaths


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


@contextlib.contextmanager
def connected_daemon(live_connector):
    """A stand-in ampdaemon holding a TCP connection to a listener on loopback, both ends
    open while the block runs."""
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
            yield daemon


def test_tcp_states_through_netlink(live_connector):
    """The stand-in daemon connects to a listener on loopback; sock_diag sees it."""

    with connected_daemon(live_connector):
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
        mine = {os.fstat(s.fileno()).st_ino for s in held}
    finally:
        for s in held:
            s.close()
    # Compared on the sockets held here: others on this machine may come and go between
    # the two dumps.
    assert len(mine) >= 600 and mine <= ours.keys() and mine <= theirs.keys()
    assert {i: ours[i] for i in mine} == {i: theirs[i] for i in mine}
    assert {1, 8, 10} <= {ours[i] for i in mine}  # established, close_wait, listen


def test_sockdiag_errors_are_sockdiag_errors():
    import pytest

    from amp_exporter.host import sockdiag

    found: dict = {}
    error = sockdiag._NLMSGHDR.pack(20, sockdiag.NLMSG_ERROR, 0, 1, 0) + (-13).to_bytes(
        4, "little", signed=True)
    with pytest.raises(sockdiag.SockDiagError, match="Permission denied"):
        sockdiag.parse_dump(error, found)
    with pytest.raises(sockdiag.SockDiagError, match="malformed"):
        sockdiag.parse_dump(sockdiag._NLMSGHDR.pack(4000, 20, 0, 1, 0), found)
    done = sockdiag._NLMSGHDR.pack(16, sockdiag.NLMSG_DONE, 0, 1, 0)
    assert sockdiag.parse_dump(done, found) is True and found == {}


# -- which procfs is live (HostPaths.procfs_is_live) ----------------------------------------
#
# Live means: this kernel boot and this process's PID namespace, whichever mount shows it.
# The namespaces below are real ones on this machine (unshare, as root); a mount made in a
# private mount namespace is reached from here through /proc/PID/root, or by running the
# exporter inside that namespace (nsenter -m: the mount namespace only, our PID namespace).

def needs_root_and_unshare() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to unshare namespaces and mount procfs")
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("util-linux unshare and nsenter are needed")


@contextlib.contextmanager
def unshared(*flags: str, setup: str = "", then: str = "exec sleep 600"):
    """A process in new namespaces (`unshare FLAGS`), once SETUP ran there; yields its PID
    (the unshare process: with --fork it stays in the new mount namespace, its child is
    in the new PID namespace and dies with it)."""
    needs_root_and_unshare()
    script = " && ".join(s for s in (setup, "echo ready", then) if s)
    p = subprocess.Popen(["unshare", *flags, "sh", "-c", script], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line == "ready\n", f"unshare {flags}: {line!r}"
        yield p.pid
    finally:
        p.kill()
        p.wait()


def served_in(pid: int, root: Path, *flags: str) -> Server:
    """The exporter served by a process in PID's mount namespace (and our PID namespace)."""
    return Server(root, "--collector.disable-defaults", *flags,
                  argv0=("nsenter", "-t", str(pid), "-m", sys.executable))


def test_the_live_proc_and_the_default_rootfs_are_live():
    assert HostPaths().procfs_is_live
    assert HostPaths("/", "/proc", "/sys").procfs_is_live
    assert HostPaths(procfs="/proc/self/root/proc").procfs_is_live
    exporter = make_exporter(build_parser().parse_args(
        ["serve", "--collector.disable-defaults", "--collector.events", "--events.source",
         "procfs"]))
    try:
        assert exporter.collectors[0].paths.procfs_is_live
    finally:
        exporter.close()


def test_every_example_host_is_not_live(hosts):
    for name, root in hosts.items():
        assert not HostPaths(str(root)).procfs_is_live, name
        exporter = make_exporter(build_parser().parse_args(
            ["serve", "--path.rootfs", str(root), "--collector.disable-defaults",
             "--collector.events", "--collector.network"]))
        try:
            s = scrape(exporter)
        finally:
            exporter.close()
        assert s.value("amp_exporter_events_ebpf_unavailable", reason="not_live_host") == 1, name
        assert s.value("amp_exporter_events_source", source="procfs") == 1, name
        assert s.value("amp_exporter_network_source", source="netlink") == 0, name


def forged_proc(tmp_path: Path, *, self_link: str | None = None, nspid: str | None = None,
                boot_id: str | None = None) -> str:
    """A static tree showing the facts liveness looks at: by default all of ours (our PID as
    `self`, NSpid with it alone, this boot's boot_id); each argument spoils one."""
    pid = str(os.getpid())
    proc = tmp_path / "proc"
    (proc / pid).mkdir(parents=True)
    (proc / "self").symlink_to(self_link or pid)
    (proc / pid / "status").write_text(f"Name:\tpython3\nPid:\t{pid}\nNSpid:\t{nspid or pid}\n")
    own = Path("/proc/sys/kernel/random/boot_id").read_text()
    if boot_id != "":
        (proc / "sys/kernel/random").mkdir(parents=True)
        (proc / "sys/kernel/random/boot_id").write_text(boot_id or own)
    return str(proc)


@pytest.mark.parametrize("spoiled", [
    {"self_link": "1"},  # another process's PID, or a static `self`
    {"nspid": f"{os.getpid() + 1000}\t{os.getpid()}"},  # an ancestor namespace, same number
    {"boot_id": ""},  # no boot_id: not a procfs of this kernel
    {"boot_id": "00000000-0000-0000-0000-000000000000\n"},  # another boot
], ids=["self", "nspid", "no_boot_id", "other_boot_id"])
def test_each_fact_is_needed(tmp_path, spoiled):
    # The control: a tree that shows every fact is taken for live (liveness is decided by
    # what the tree shows); spoiling any one of them makes it not live.
    assert HostPaths(procfs=forged_proc(tmp_path / "control")).procfs_is_live
    assert not HostPaths(procfs=forged_proc(tmp_path / "spoiled", **spoiled)).procfs_is_live


def test_liveness_is_decided_once(tmp_path):
    procfs = forged_proc(tmp_path)
    paths = HostPaths(procfs=procfs)
    assert paths.procfs_is_live
    shutil.rmtree(procfs)
    assert paths.procfs_is_live  # cached: not read again on every scrape
    assert not HostPaths(procfs=procfs).procfs_is_live


def test_a_second_procfs_of_our_pid_namespace_is_live(tmp_path):
    mnt = tmp_path / "proc"
    mnt.mkdir()
    with unshared("-m", setup=f"mount -t proc proc {mnt}") as pid:
        procfs = f"/proc/{pid}/root{mnt}"
        assert os.path.exists(f"{procfs}/{os.getpid()}/stat")
        # Another superblock than our /proc: the old inode comparison said "not live".
        assert not os.path.samefile(procfs, "/proc")
        assert HostPaths(procfs=procfs).procfs_is_live


@contextlib.contextmanager
def host_at(tmp_path: Path):
    """/ bound at ROOT in a private mount namespace, with a procfs of its own mounted at
    ROOT/proc: a container's /host (--path.rootfs=/host, --pid=host). Yields (pid, ROOT)."""
    root = tmp_path / "host"
    root.mkdir()
    with unshared("-m", setup=f"mount --rbind / {root} && mount -t proc proc {root}/proc") \
            as pid:
        assert not os.path.samefile(f"/proc/{pid}/root{root}/proc", "/proc")
        yield pid, root


def test_a_container_view_with_its_own_procfs_uses_sock_diag(tmp_path, live_connector):
    with connected_daemon(live_connector), host_at(tmp_path) as (pid, root):
        server = served_in(pid, root, "--collector.events", "--collector.network")
        try:
            s = server.scrape()
        finally:
            server.stop()
    assert s.success() == {"events": 1, "network": 1}
    assert s.value("amp_exporter_network_source", source="netlink") == 1
    assert s.value("cisco_amp_tcp_connections", process="ampdaemon", state="established") == 1
    # The eBPF source is allowed to start: whatever it lacks on this machine, not liveness.
    assert s.value("amp_exporter_events_ebpf_unavailable", reason="not_live_host") is None


@pytest.mark.usefixtures("ebpf_ready")
def test_a_container_view_with_its_own_procfs_counts_through_ebpf(tmp_path):
    with host_at(tmp_path) as (pid, root):
        server = served_in(pid, root, "--collector.events")
        try:
            wait_for_ebpf(server)
            s = server.scrape()
        finally:
            server.stop()
    assert s.value("amp_exporter_events_source", source="ebpf") == 1
    assert s.value("amp_exporter_events_tracepoints_attached") >= 15
    assert "amp_exporter_events_ebpf_unavailable" not in s


def test_the_procfs_of_another_pid_namespace_is_not_live(live_connector):
    live_connector("ampdaemon")  # installs the stand-in binary run below, in the namespace
    with unshared("-m", "-p", "--kill-child", "--mount-proc",
                  then=f"exec {LIVE_BIN}/ampdaemon 600") as pid:
        procfs = f"/proc/{pid}/root/proc"
        deadline = time.monotonic() + 10  # its PID 1, not our init, once it has exec'd
        while os.readlink(f"{procfs}/1/exe") != f"{LIVE_BIN}/ampdaemon":
            assert time.monotonic() < deadline, "the namespace never ran the stand-in"
            time.sleep(0.01)
        assert not os.path.exists(f"{procfs}/self")  # we are not in it: `self` dangles
        assert not HostPaths(procfs=procfs).procfs_is_live
        exporter = make_exporter(build_parser().parse_args(
            ["serve", "--path.procfs", procfs, "--collector.disable-defaults",
             "--collector.events", "--collector.network"]))
        try:
            s = scrape(exporter)
        finally:
            exporter.close()
    assert s.value("amp_exporter_events_ebpf_unavailable", reason="not_live_host") == 1
    assert s.value("amp_exporter_network_source", source="procfs") == 1
    assert s.value("cisco_amp_tcp_connections", process="ampdaemon", state="established") == 0


IN_NAMESPACE = """
import os, sys
from amp_exporter.cli import build_parser, exposition, make_exporter
from amp_exporter.host.paths import HostPaths
procfs, pid = sys.argv[1], os.getpid()
try:
    same = os.stat(f"{procfs}/{pid}/ns/pid") == os.stat("/proc/self/ns/pid")
except OSError as exc:
    same = exc.strerror
print("pid", pid, "self", os.readlink(procfs + "/self"), "same ns/pid", same, file=sys.stderr)
print("live", HostPaths(procfs=procfs).procfs_is_live, file=sys.stderr)
exporter = make_exporter(build_parser().parse_args(
    ["serve", "--path.procfs", sys.argv[1], "--collector.disable-defaults",
     "--collector.events", "--collector.network"]))
try:
    sys.stdout.write(exposition(exporter).decode())
finally:
    exporter.close()
"""


def test_the_hosts_procfs_from_another_pid_namespace_is_not_live(tmp_path, live_connector):
    """A container without --pid=host, the host's /proc mounted into it: the host's PIDs,
    ours in another namespace. The host's connector is seen, but through proc/PID/net."""
    host_proc = tmp_path / "host-proc"
    host_proc.mkdir()
    with connected_daemon(live_connector):
        needs_root_and_unshare()
        result = subprocess.run(
            ["unshare", "-m", "-p", "--kill-child", "sh", "-c",
             f"mount --rbind /proc {host_proc} && mount -t proc proc /proc && "
             'exec "$@"', "sh", sys.executable, "-c", IN_NAMESPACE, str(host_proc)],
            capture_output=True, text=True, timeout=60, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "TZ": "UTC"})
    assert result.returncode == 0, result.stderr
    assert "live False" in result.stderr
    s = Scrape(parse_exposition(result.stdout))
    assert s.success() == {"events": 1, "network": 1}
    assert s.value("amp_exporter_events_ebpf_unavailable", reason="not_live_host") == 1
    assert s.value("amp_exporter_network_source", source="procfs") == 1
    assert s.value("cisco_amp_tcp_connections", process="ampdaemon", state="established") == 1


def test_an_ancestor_namespace_where_our_pid_is_the_same_number_is_not_live(tmp_path):
    """The host's /proc in a container without --pid=host, where the exporter's PID in its
    namespace happens to be its host PID too: `self` then names our PID, and PROCFS/PID is
    really us (the same ns/pid link); only NSpid tells the namespaces apart.
    The coincidence is arranged with ns_last_pid in both namespaces."""
    needs_root_and_unshare()
    host_proc = tmp_path / "host-proc"
    host_proc.mkdir()
    p = subprocess.Popen(
        ["unshare", "-m", "-p", "--kill-child", "sh", "-c",
         f"mount --rbind /proc {host_proc} && mount -t proc proc /proc && echo ready && "
         'read n && echo $((n - 1)) > /proc/sys/kernel/ns_last_pid && "$@"', "sh",
         sys.executable, "-c", IN_NAMESPACE, str(host_proc)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "TZ": "UTC"})
    try:
        assert p.stdout.readline() == "ready\n"
        # The next PID here, a little ahead of this machine's, free; the namespace's next
        # PID the same. The exporter, forked by the namespace's shell, gets both.
        with open("/proc/sys/kernel/ns_last_pid") as f:
            n = int(f.read()) + 200
        with open("/proc/sys/kernel/pid_max") as f:
            if n >= int(f.read()) - 1000:
                n = 1000  # PIDs wrap around there anyway
        while os.path.exists(f"/proc/{n}"):
            n += 1
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(n - 1))
        out, err = p.communicate(f"{n}\n", timeout=60)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 0, err
    if f"pid {n} self {n} " not in err:
        pytest.skip(f"another process took PID {n} first: {err.splitlines()[:1]}")
    assert "same ns/pid True" in err  # the namespace link alone would call it live
    assert "live False" in err
    s = Scrape(parse_exposition(out))
    assert s.value("amp_exporter_events_ebpf_unavailable", reason="not_live_host") == 1
