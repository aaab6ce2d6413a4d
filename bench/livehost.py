"""A stand-in Cisco Secure Endpoint connector on this machine, seen only inside a private
mount namespace: what the live benchmarks (bench/live.py, bench/scrape.py's live RSS) run
the exporter against.

This machine's /opt is never written. A holder process runs in a new mount namespace
(`unshare --mount --propagation private`), checks that no mount there propagates back to
the machine, mounts a tmpfs over /opt (there only), lays out /opt/cisco/amp (the files of
the example host healthy-ebpf-btf, with stand-in binaries: `livehold.c` compiled and copied
as ampdaemon, ampscansvc and ampcli) and starts ampdaemon and ampscansvc from it. Each holds
loopback TCP connections and a Unix socket as the real daemons do (ampscansvc's connected to
ampdaemon's). ampcli works as the real one does: one compiled program, exec'd once, that
connects to the daemon's socket (DAEMON_SOCKET), asks, and prints what the daemon answers:
the stand-in daemon answers every connection's request with a real status (real_status():
tests/test_status_parser.REAL after the noise lines ampcli prints first, exactly), given to
it at start as a file in the tmpfs, while it holds ampscansvc's connection. With the daemon
gone, ampcli prints the real one's first lines and exits 1, as a real host's does with its
daemon dead. Not a shell script, as it was: sh parsing a heredoc through cat is two execs
and a parse, ~1 ms of CPU a run more than the binary, which a scrape with ampcli on every
scrape would have charged to the exporter as a simulation artefact.
Whatever should see the connector (the exporter, and the baselines, so that they start the
same way) is started in that namespace through `wrap()` (nsenter): it sees this machine's
real /proc, /sys and sockets, and the stand-in connector in /opt.

With `service_cgroup=True` (bench/live.py), the stand-ins run in a service cgroup of their
own, as systemd runs `cisco-amp.service`: the exporter finds the connector's processes
through their service's cgroup (cgroup.procs) and lists /proc only as a fallback, and in
the root cgroup (a machine without systemd) it takes the fallback on every scrape, which
is not what a real host measures. ServiceCgroup makes one in each hierarchy systemd keeps
units in (cgroup v2, wherever it is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a
hybrid host; and the v1 `name=systemd` hierarchy where there is one), and the holder puts
each stand-in in it before exec (its first instruction runs there):

- `system.slice/cisco-amp.service` at the hierarchy's root, the unit's own path, where
  that hierarchy has no `system.slice` and PID 1 is not systemd (a machine without
  systemd, like a CI container): it is the path the exporter looks at first, before it
  lists /proc, on every first collection (a start, each `textfile` run), so only there
  does the benchmark measure what a real host's start costs. Both directories are ours
  and both are removed, the unit's first. Made only where systemd is absent, so no real
  unit is ever shadowed, and nothing is made inside a system.slice of systemd's.
- otherwise (a systemd machine) `amp-bench-<pid>-<n>.cisco-amp.service` as a child of the
  cgroup this process runs in: never inside systemd's system.slice, never an existing
  cisco-amp.service. The exporter still finds the stand-ins through it at every scrape,
  but a first collection lists /proc there, as it would for a unit it does not know.

Each is a kernel object with no controller enabled or limit set, removed (rmdir) once the
stand-ins have exited: a temporary thing like our temporary directories, and the only
thing written outside them. A throwaway process is moved in first (only a move tells
whether the kernel takes processes there) and stays until the stand-ins are in, so that a
cgroup of ours is empty only for the moment between its mkdir and that move. Left by a
benchmark killed outright, and removed at the next start: an amp-bench one whose creator
PID is gone; on a machine whose PID 1 is not systemd, a `system.slice` holding only an
empty `cisco-amp.service` (or nothing: killed between the two rmdirs). rmdir takes only an
empty cgroup, so one in use is never touched. Where none can be made (no permission, no
cgroupfs, a v2 tree that refuses the move), `why` says so and the stand-ins stay in our
cgroup, as before.

Every process started here dies with its parent (PR_SET_PDEATHSIG: `setpriv --pdeathsig`,
or the helper itself), so that a benchmark killed outright leaves nothing running. When
the holder's stdin closes (close(), or its parent's death) it stops the stand-ins and
exits; the namespace and its tmpfs go with the last process in it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import itertools
import os
import re
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
# Where the stand-in daemon's status text is, in the namespace's tmpfs (outside the
# connector's tree, which the exporter reads).
STATUS_FILE = "/opt/amp-bench/ampdaemon-status"
# What the real ampcli prints first, before the status (tests/test_ampcli_runner's
# REAL_STATUS: the noise lines, then test_status_parser.REAL).
AMPCLI_NOISE = ("[logger] Set minimum reported log level to notice\nTrying to connect...\n"
                "Connected.\n")
PR_SET_CHILD_SUBREAPER = 36
# The stand-ins' service cgroup where systemd is absent: the unit's own path.
UNIT_SLICE, UNIT = "system.slice", "cisco-amp.service"
# ... and under our own cgroup elsewhere: ours by its prefix, unique by our PID and a counter.
CGROUP_NAME = "amp-bench-{pid}-{n}.cisco-amp.service"
CGROUP_OURS = re.compile(r"amp-bench-(\d+)-\d+\.cisco-amp\.service")
_cgroup_serial = itertools.count(1)


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
    """bench/livehold.c, compiled into work (its ampcli asks the daemon at DAEMON_SOCKET)."""
    binary = work / "livehold"
    subprocess.run(["cc", "-O2", "-Wall", f'-DAMPCLI_SOCKET="{DAEMON_SOCKET}"', "-o",
                    str(binary), str(HELPER_SOURCE)], check=True)
    return binary


def real_status() -> str:
    """A real `ampcli status` answer, as the tests know it."""
    spec = importlib.util.spec_from_file_location(
        "_live_status_parser", REPO / "tests" / "test_status_parser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return AMPCLI_NOISE + module.REAL


def pid1_is_systemd() -> bool:
    """Whether this machine runs systemd (as its PID 1; unreadable: assume it does)."""
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return True


def daemon_request(socket_path: str, request: str, timeout: float = 5) -> str:
    """The stand-in daemon's answer to one request ('status', 'count'), as ampcli asks."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(socket_path)
        s.sendall(request.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


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


class ServiceCgroup:
    """The stand-ins' service cgroup (see the module's docstring): `dirs`, one directory per
    hierarchy it was made in (empty when none could be), `paths` {hierarchy: its path as
    /proc/PID/cgroup shows it}, `why` when one could not be made."""

    def __init__(self) -> None:
        self.dirs: list[Path] = []
        self.paths: dict[str, str] = {}
        self.why = ""
        self.name = CGROUP_NAME.format(pid=os.getpid(), n=next(_cgroup_serial))
        self._made: list[Path] = []  # every directory we made, outermost first
        self._probe: Optional[subprocess.Popen] = None

    @staticmethod
    def hierarchies() -> tuple[list[tuple[str, Path, str, Optional[Path]]], list[str]]:
        """([(hierarchy, the directory of our own cgroup in it, our cgroup's path, the
        hierarchy's root directory or None when the mount shows only a subtree)], why not,
        for the others) of the hierarchies systemd keeps units in: v2, and v1's
        name=systemd."""
        ours: dict[str, str] = {}
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and not controllers:
                ours["v2"] = path
            elif "name=systemd" in controllers.split(","):
                ours["name=systemd"] = path
        found, why = [], []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            before, _, after = line.partition(" - ")
            fields, (fstype, _source, options) = before.split(), after.split()[:3]
            root, mountpoint = fields[3], fields[4].replace("\\040", " ")
            if fstype == "cgroup2":
                name = "v2"
            elif fstype == "cgroup" and "name=systemd" in options.split(","):
                name = "name=systemd"
            else:
                continue
            if name in (n for n, *_ in found) or name not in ours:
                continue
            path = ours[name]
            # Our cgroup as this mount shows it (a mount of a subtree shows only what is
            # under its root; a path from a cgroup namespace's root starts "/..").
            rel = os.path.relpath(path, root)
            if path.startswith("/..") or rel == ".." or rel.startswith("../"):
                why.append(f"{name}: our cgroup {path} is not under {mountpoint}")
                continue
            top = Path(mountpoint)
            found.append((name, top / rel if rel != "." else top, path,
                          top if root == "/" else None))
        if not found and not why:
            why.append("no cgroup v2 or name=systemd hierarchy mounted")
        return found, why

    def make(self) -> None:
        """Make it in each hierarchy (stale ones of ours removed first), and check that a
        process can be moved into it (the probe, kept there until release()): else
        remove it, and say why."""
        places, why = self.hierarchies()
        systemd = pid1_is_systemd()
        for hierarchy, parent, path, top in places:
            self._remove_stale(parent)
            if top is not None and not systemd:
                self._remove_stale_unit(top / UNIT_SLICE)
            if top is not None and not systemd and not (top / UNIT_SLICE).exists():
                # No systemd, no system.slice: the unit's own path is free, and ours.
                made = [top / UNIT_SLICE, top / UNIT_SLICE / UNIT]
                cgroup_path = f"/{UNIT_SLICE}/{UNIT}"
            else:
                made = [parent / self.name]
                cgroup_path = path.rstrip("/") + "/" + self.name
            directory = made[-1]
            try:
                for d in made:
                    d.mkdir()
                    self._made.append(d)
            except OSError as exc:
                why.append(f"{hierarchy}: cannot make {d} ({exc.strerror})")
                self._remove(made)
                continue
            # Only a move tells whether the kernel takes processes there (permissions, v2's
            # rules on where processes may be, a threaded subtree).
            if self._probe is None:
                self._probe = subprocess.Popen(die_with_parent(["sleep", "600"]))
            try:
                (directory / "cgroup.procs").write_text(str(self._probe.pid))
                self.dirs.append(directory)
                self.paths[hierarchy] = cgroup_path
            except OSError as exc:
                why.append(f"{hierarchy}: cannot move a process into {directory} "
                           f"({exc.strerror})")
                self._remove(made)
        if not self.dirs:
            self.release()
        self.why = "; ".join(why)

    def release(self) -> None:
        """The stand-ins are in: the probe goes (until then it kept the cgroup in use, so
        that another run's stale removal could not take it)."""
        if self._probe is not None:
            self._probe.kill()
            self._probe.wait()
            self._probe = None

    @staticmethod
    def _remove_stale(parent: Path) -> None:
        """Ours from a benchmark killed outright: its creator gone. rmdir removes only
        an empty cgroup (EBUSY otherwise), so one still in use is never touched."""
        with contextlib.suppress(OSError):
            for entry in parent.iterdir():
                m = CGROUP_OURS.fullmatch(entry.name)
                if m and not os.path.exists(f"/proc/{m.group(1)}"):
                    with contextlib.suppress(OSError):
                        entry.rmdir()

    @staticmethod
    def _remove_stale_unit(slice_dir: Path) -> None:
        """On a machine without systemd, a system.slice holding only an empty
        cisco-amp.service (or nothing) is ours, left by a benchmark killed outright.
        rmdir takes only an empty cgroup: one in use (another run's) stays."""
        with contextlib.suppress(OSError):
            children = {e.name for e in slice_dir.iterdir() if e.is_dir()}
            if children <= {UNIT}:
                if children:
                    (slice_dir / UNIT).rmdir()
                slice_dir.rmdir()

    def _remove(self, dirs: list[Path], timeout: float = 0) -> list[str]:
        """rmdir those of `dirs` (outermost first) that we made, innermost first; what could
        not be removed (and so neither could what holds it)."""
        left: list[str] = []
        for d in reversed(dirs):
            if d not in self._made:
                continue
            if any(d in Path(kept).parents for kept in left) or not _rmdir(d, timeout):
                left.append(str(d))
            else:
                self._made.remove(d)
        return left

    def close(self, timeout: float = 5) -> list[str]:
        """Remove it (the stand-ins have exited: retried while the kernel lets the last of
        them go); what could not be removed."""
        self.release()
        left = self._remove(list(self._made), timeout)
        self.dirs, self.paths = [], {}
        return left


def _rmdir(directory: Path, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            directory.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


class ConnectorNamespace:
    """The private mount namespace with the stand-in connector running in it (see the
    module's docstring). `stand_ins`: {name: PID}."""

    def __init__(self, work: Path, helper: Optional[Path] = None,
                 status: Optional[str] = None, service_cgroup: bool = False) -> None:
        self.work = work / "connector-ns"
        self.work.mkdir(parents=True, exist_ok=True)
        self.helper = helper or build_helper(self.work)
        self.status = status if status is not None else real_status()
        self.holder: Optional[subprocess.Popen] = None
        self.stand_ins: dict[str, int] = {}
        self.ns = ""
        # The stand-ins' own service cgroup (None: they stay in ours); cgroup_left: its
        # directories that close() could not remove.
        self.cgroup: Optional[ServiceCgroup] = ServiceCgroup() if service_cgroup else None
        self.cgroup_left: list[str] = []

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
        for name in ("ampdaemon", "ampscansvc", "ampcli"):
            shutil.copy(self.helper, bin_dir / name)
        (tree / "cisco/amp/var/run").mkdir(parents=True, exist_ok=True)
        # The daemon's answer, laid out as in the namespace's /opt (STATUS_FILE).
        status_file = tree / os.path.relpath(STATUS_FILE, "/opt")
        status_file.parent.mkdir(parents=True, exist_ok=True)
        status_file.write_bytes(self.status.encode())
        outside = mount_ns()
        if self.cgroup is not None:
            self.cgroup.make()
        cgroups = [str(d) for d in self.cgroup.dirs] if self.cgroup else []
        self.holder = subprocess.Popen(
            die_with_parent(["unshare", "--mount", "--propagation", "private", "--",
                             sys.executable, __file__, "hold", str(tree), outside, *cgroups]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        if not line.startswith("ready "):
            self.holder.wait(10)
            raise RuntimeError(f"the connector namespace did not start: {line!r}")
        self.stand_ins = dict((kv.split("=")[0], int(kv.split("=")[1]))
                              for kv in line.split()[1:])
        if self.cgroup is not None:
            self.cgroup.release()  # the stand-ins keep it in use now
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

    def ampcli_runs(self) -> int:
        """How many status answers the stand-in daemon has given (one per ampcli run that
        reached it), asked through the holder's root, which is in the namespace."""
        assert self.holder is not None
        return int(daemon_request(f"/proc/{self.holder.pid}/root{DAEMON_SOCKET}", "count"))

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
        if self.holder is not None:
            with contextlib.suppress(OSError):
                self.holder.stdin.close()
            try:
                self.holder.wait(10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait()
            self.holder = None
        if self.cgroup is not None:
            # The holder has waited for its stand-ins (or, killed, they die with it).
            self.cgroup_left += self.cgroup.close()


# -- inside the namespace -----------------------------------------------------------------

def _refuse_shared_mounts() -> None:
    """A mount over /opt must not reach the machine: no mount here may be shared."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        optional = line.split(" - ")[0].split()[6:]
        if any(tag.startswith("shared:") for tag in optional):
            raise SystemExit(f"livehost: a shared mount in the namespace, refusing: {line}")


def _join(cgroups: list[str]):
    """A preexec_fn: the child moves itself into each cgroup before it execs, so that the
    stand-in's first instruction already runs in its service's cgroup, as under systemd."""

    def join() -> None:
        for directory in cgroups:
            with open(os.path.join(directory, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    return join


def hold(tree: str, outside_ns: str, cgroups: list[str]) -> int:
    if mount_ns() == outside_ns:
        raise SystemExit("livehost: not in a new mount namespace, refusing to mount")
    _refuse_shared_mounts()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "amp-bench", "/opt"],
                   check=True)
    for top in ("cisco", os.path.relpath(STATUS_FILE, "/opt").split("/")[0]):
        shutil.copytree(Path(tree) / top, f"/opt/{top}", symlinks=True)
    procs: list[subprocess.Popen] = []

    def stop(*_) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        for name, args in (("ampdaemon", ["daemon", str(DAEMON_TCP), DAEMON_SOCKET,
                                          STATUS_FILE]),
                           ("ampscansvc", ["client", DAEMON_SOCKET])):
            p = subprocess.Popen([f"{OPT_BIN}/{name}", *args], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True,
                                 preexec_fn=_join(cgroups) if cgroups else None)
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
    if len(sys.argv) >= 4 and sys.argv[1] == "hold":
        raise SystemExit(hold(sys.argv[2], sys.argv[3], sys.argv[4:]))
    raise SystemExit("usage: livehost.py hold TREE OUTSIDE_MOUNT_NS [CGROUP_DIR ...] "
                     "(started by ConnectorNamespace)")
