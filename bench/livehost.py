"""A stand-in Cisco Secure Endpoint connector on this machine, seen only inside a private
mount namespace: what the live benchmarks (bench/live.py, bench/scrape.py's live RSS) run
the exporter against.

This machine's /opt is never written. A holder process runs in a new mount namespace
(`unshare --mount --propagation private`), checks that no mount there propagates back to
the machine, mounts a tmpfs over /opt (there only), lays out /opt/cisco/amp (the files of
the example host healthy-ebpf-btf, with stand-in binaries: `livehold.c` compiled and copied
as ampdaemon and ampscansvc, each holding loopback TCP connections and a Unix socket as the
real daemons do, and an ampcli that prints a real status, tests/test_status_parser.REAL
after the noise lines ampcli prints first) and starts ampdaemon and ampscansvc from it.
Whatever should see the connector (the exporter, and the baselines, so that they start the
same way) is started in that namespace through `wrap()` (nsenter): it sees this machine's
real /proc, /sys and sockets, and the stand-in connector in /opt.

Every process started here dies with its parent (PR_SET_PDEATHSIG: `setpriv --pdeathsig`,
or the helper itself), so that a benchmark killed outright leaves nothing running. When
the holder's stdin closes (close(), or its parent's death) it stops the stand-ins and
exits; the namespace and its tmpfs go with the last process in it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
HELPER_SOURCE = REPO / "bench" / "livehold.c"
OPT_BIN = "/opt/cisco/amp/bin"
DAEMON_SOCKET = "/opt/cisco/amp/var/run/ampdaemon.sock"
DAEMON_TCP = 3  # established loopback connections the stand-in daemon holds, both ends
# What the stand-in ampcli prints first, before the status (tests/test_ampcli_runner's
# REAL_STATUS: the noise lines, then test_status_parser.REAL).
AMPCLI_NOISE = ("[logger] Set minimum reported log level to notice\nTrying to connect...\n"
                "Connected.\n")
PR_SET_CHILD_SUBREAPER = 36


def unavailable() -> Optional[str]:
    """Why a private mount namespace with a stand-in connector cannot be made here (None:
    it can)."""
    if os.geteuid() != 0:
        return "needs root (a mount namespace, a tmpfs over /opt inside it)"
    for tool in ("unshare", "nsenter", "setpriv", "mount", "cc"):
        if not shutil.which(tool):
            return f"needs {tool}"
    return None


def die_with_parent(argv: list[str]) -> list[str]:
    """argv, run so that it is killed when the process that started it dies."""
    return ["setpriv", "--pdeathsig", "KILL", "--", *argv]


def build_helper(work: Path) -> Path:
    """bench/livehold.c, compiled into work."""
    binary = work / "livehold"
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(binary), str(HELPER_SOURCE)], check=True)
    return binary


def real_status() -> str:
    """A real `ampcli status` answer, as the tests know it."""
    spec = importlib.util.spec_from_file_location(
        "_live_status_parser", REPO / "tests" / "test_status_parser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return AMPCLI_NOISE + module.REAL


def ampcli_script(status: str) -> str:
    return ("#!/bin/sh\n# Stand-in for ampcli, written by bench/livehost.py: a real status.\n"
            'case "$1" in\nstatus)\n    cat <<\'EOF\'\n' + status + "EOF\n    ;;\n"
            '*)\n    echo "Unknown command: $1" >&2\n    exit 1\n    ;;\nesac\n')


def mount_ns(pid: int | str = "self") -> str:
    return os.readlink(f"/proc/{pid}/ns/mnt")


def become_subreaper() -> None:
    """Orphans of our children come to us (this machine's PID 1 does not reap them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def children_of(pid: int) -> list[int]:
    """Live (or unreaped) children of pid, over all its threads."""
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    return kids


def describe(pid: int) -> str:
    """'PID (comm) state' of a process, or just the PID once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return str(pid)
    comm, state = stat.partition("(")[2].rpartition(")")[0], stat.rpartition(")")[2].split()[0]
    return f"{pid} ({comm}) {state}"


def end_children(keep: frozenset[int] = frozenset()) -> list[str]:
    """Kill and reap whatever else is still our child (orphans that came to us as the
    subreaper, anything a failure left): what was found, as describe() says it."""
    found = [pid for pid in children_of(os.getpid()) if pid not in keep]
    said = [describe(pid) for pid in found]
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in found:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return said


class ConnectorNamespace:
    """The private mount namespace with the stand-in connector running in it (see the
    module's docstring). `stand_ins`: {name: PID}."""

    def __init__(self, work: Path, helper: Optional[Path] = None,
                 status: Optional[str] = None) -> None:
        self.work = work / "connector-ns"
        self.work.mkdir(parents=True, exist_ok=True)
        self.helper = helper or build_helper(self.work)
        self.status = status if status is not None else real_status()
        self.holder: Optional[subprocess.Popen] = None
        self.stand_ins: dict[str, int] = {}
        self.ns = ""

    def __enter__(self) -> ConnectorNamespace:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        sys.path.insert(0, str(REPO / "examples"))
        import build_hosts

        host = build_hosts.build(self.work / "host", ["healthy-ebpf-btf"])["healthy-ebpf-btf"]
        tree = host / "opt"
        bin_dir = tree / "cisco/amp/bin"
        for name in ("ampdaemon", "ampscansvc"):
            shutil.copy(self.helper, bin_dir / name)
        (bin_dir / "ampcli").write_text(ampcli_script(self.status))
        (tree / "cisco/amp/var/run").mkdir(parents=True, exist_ok=True)
        outside = mount_ns()
        self.holder = subprocess.Popen(
            die_with_parent(["unshare", "--mount", "--propagation", "private", "--",
                             sys.executable, __file__, "hold", str(tree), outside]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        if not line.startswith("ready "):
            self.holder.wait(10)
            raise RuntimeError(f"the connector namespace did not start: {line!r}")
        self.stand_ins = dict((kv.split("=")[0], int(kv.split("=")[1]))
                              for kv in line.split()[1:])
        self.ns = mount_ns(self.holder.pid)
        assert self.ns != outside
        # The tmpfs is theirs alone: here, /opt is untouched.
        assert not any(m.split()[4] == "/opt" and "amp-bench" in m for m in
                       Path("/proc/self/mountinfo").read_text().splitlines()), "tmpfs leaked"

    def wrap(self, argv: list[str], cwd: Path = REPO) -> list[str]:
        """argv, run inside the namespace (and killed when its starter dies)."""
        assert self.holder is not None
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--wd={cwd}", "--",
                *die_with_parent(argv)]

    def left(self) -> list[int]:
        """PIDs of processes still in the namespace."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if self.ns and mount_ns(entry) == self.ns:
                        pids.append(int(entry))
        return pids

    def close(self) -> None:
        if self.holder is None:
            return
        with contextlib.suppress(OSError):
            self.holder.stdin.close()
        try:
            self.holder.wait(10)
        except subprocess.TimeoutExpired:
            self.holder.kill()
            self.holder.wait()
        self.holder = None


# -- inside the namespace -----------------------------------------------------------------

def _refuse_shared_mounts() -> None:
    """A mount over /opt must not reach the machine: no mount here may be shared."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        optional = line.split(" - ")[0].split()[6:]
        if any(tag.startswith("shared:") for tag in optional):
            raise SystemExit(f"livehost: a shared mount in the namespace, refusing: {line}")


def hold(tree: str, outside_ns: str) -> int:
    if mount_ns() == outside_ns:
        raise SystemExit("livehost: not in a new mount namespace, refusing to mount")
    _refuse_shared_mounts()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "amp-bench", "/opt"],
                   check=True)
    shutil.copytree(Path(tree) / "cisco", "/opt/cisco", symlinks=True)
    procs: list[subprocess.Popen] = []

    def stop(*_) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        for name, args in (("ampdaemon", ["daemon", str(DAEMON_TCP), DAEMON_SOCKET]),
                           ("ampscansvc", ["client", DAEMON_SOCKET])):
            p = subprocess.Popen([f"{OPT_BIN}/{name}", *args], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            if p.stdout.readline() != "ready\n":
                raise SystemExit(f"livehost: stand-in {name} did not start")
        print("ready " + " ".join(f"{n}={p.pid}" for n, p in
                                  zip(("ampdaemon", "ampscansvc"), procs)), flush=True)
        sys.stdin.read()  # until the benchmark closes it, or dies
    except KeyboardInterrupt:
        pass
    finally:
        for p in reversed(procs):
            with contextlib.suppress(OSError):
                p.stdin.close()
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "hold":
        raise SystemExit(hold(sys.argv[2], sys.argv[3]))
    raise SystemExit("usage: livehost.py hold TREE OUTSIDE_MOUNT_NS (started by "
                     "ConnectorNamespace)")
