"""Running the connector's `ampcli status` safely.

`ampcli` talks to the connector daemon and can block when the daemon is stuck,
so it runs with a deadline, a cap on its output, in its own process group (so
children it leaves behind are killed too), and never more than one at a time:
concurrent scrapes share one run and its cached result.

Its exit codes are not public. A run that exits non-zero but printed a status (known
status keys) is used, with its exit code kept and a warning logged when the code
changes; one that printed no status is a failure, as a run that exits 0 and prints none.

In the host's root. Reading a host through --path.rootfs (a container's /host), ampcli is
run chrooted into that root, as /opt/cisco/amp/bin/ampcli with / as its working
directory: it is a dynamically linked program that needs the host's libraries, files and
control socket, which the exporter's own root does not have (--ampcli.chroot: auto, the
default, does this when the root is not / and ampcli lies under it). The chroot happens
in a small helper, this Python started with -I -S, that chroots, changes directory and
execs ampcli in place (same PID, same process group: the deadline, the output cap and the
group kill apply as before) and tells over a close-on-exec pipe how far it got. Not
subprocess's preexec_fn, which runs Python in a forked copy of a threaded process and can
deadlock there; not the chroot(8) program, whose exit codes 125-127 could be ampcli's own.
chroot(2) needs CAP_SYS_CHROOT: without it the run is a "permission" failure that says so.
In the self-contained build (scripts/build-dist: PyInstaller, sys.frozen) sys.executable is
the exporter's own binary, not a Python: the helper runs as `BINARY FROZEN_HELPER_ARG ...`,
which the frozen entry point (deploy/packages/frozen_main.py) hands to run_frozen_helper().
There ampcli replaces a child of the binary's bootloaders rather than the process started,
still in the same process group, so the deadline, the output cap and the group kill hold.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from amp_exporter.host.paths import HostPaths, open_host_file
from amp_exporter.host.status import ConnectorStatus, StatusParseError, parse_status

log = logging.getLogger("amp_exporter.host.ampcli")

OUTPUT_LIMIT = 256 * 1024  # real status output is under 2 KiB
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C"}
CHROOT_MODES = ("auto", "always", "never")
HOST_AMPCLI = "/opt/cisco/amp/bin/ampcli"

# argv: FD ROOT PATH ARG...: chroot(ROOT), chdir("/"), exec PATH with ARGs. Writes "+" to FD
# just before the exec (FD is close-on-exec: the exec closes it), or "!STEP ERRNO" when a
# step fails, then exits 127. Only os and sys, both built in: nothing is imported after the
# chroot, and nothing of the exporter's (-I -S: no site, no environment, no user paths).
_HELPER = f"""\
import os, sys
fd, root, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
step = "chroot"
try:
    os.set_inheritable(fd, False)
    os.chroot(root)
    step = "chdir"
    os.chdir("/")
    step = "exec"
    os.write(fd, b"+")
    os.execve(path, [path] + sys.argv[4:], {_ENV!r})
except OSError as exc:
    os.write(fd, ("!%s %d" % (step, exc.errno or 0)).encode())
os._exit(127)
"""


# The first argument that makes the frozen binary run _HELPER instead of the exporter.
FROZEN_HELPER_ARG = "--amp-exporter-internal-chroot-helper"


def helper_argv() -> list[str]:
    """How to start _HELPER: this Python with -I -S, or the frozen binary as itself."""
    if getattr(sys, "frozen", False):
        return [sys.executable, FROZEN_HELPER_ARG]
    return [sys.executable, "-I", "-S", "-c", _HELPER]


def run_frozen_helper(args: list[str]) -> None:
    """The frozen binary's helper: _HELPER with sys.argv[1:] = ARGS (FD ROOT PATH ARG...).
    Never returns: it execs ampcli or exits 127."""
    sys.argv[1:] = args
    exec(compile(_HELPER, "<ampcli chroot helper>", "exec"), {"__name__": "__helper__"})
    os._exit(127)  # _HELPER ends so; in case it did not


def chroot_plan(path: str, rootfs: str, mode: str) -> tuple[Optional[str], str]:
    """(the root ampcli runs in, or None for the exporter's own; the path exec gets there).

    never: PATH as it is. always: chroot into ROOTFS, PATH must lie under it (ValueError
    otherwise). auto: as always when ROOTFS is not / and PATH lies under it (an --ampcli.path
    elsewhere is a program of the exporter's own root), else as never.
    """
    if mode not in CHROOT_MODES:
        raise ValueError(f"--ampcli.chroot {mode!r}: not one of {', '.join(CHROOT_MODES)}")
    if mode == "never":
        return None, path
    root = os.path.abspath(rootfs)
    inside = _under(os.path.abspath(path), root)
    if mode == "auto" and (inside is None or os.path.realpath(root) == "/"):
        return None, path
    if inside is None:
        raise ValueError(f"--ampcli.path {path} is not under --path.rootfs {rootfs}: with "
                         "--ampcli.chroot=always ampcli runs in that root, so it must be")
    return root, inside


def _under(path: str, root: str) -> Optional[str]:
    """PATH as seen from ROOT ('/opt/...'), or None when it is not below ROOT (by name)."""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix) or path == prefix:
        return None
    return "/" + path[len(prefix):].lstrip("/")


def lacking_in_root(root: str, host_path: str) -> Optional[str]:
    """What exec of HOST_PATH inside ROOT would need and ROOT visibly lacks: a script's
    interpreter ('#!/bin/sh') or an ELF program's loader (its PT_INTERP), followed as the
    kernel does (an interpreter that is itself a script or dynamic), with absolute links
    resolved inside ROOT. None when all of it is there, or when it cannot be told (HOST_PATH
    itself missing or unreadable: then the exec in ROOT says what is wrong)."""
    paths = HostPaths(root)
    current = host_path
    for _ in range(5):  # the kernel follows at most 4 interpreters
        found = paths.resolve(current)
        if found is None:
            return None if current == host_path else current
        try:
            needed = _interpreter(found)
        except (OSError, ValueError, struct.error):
            return None
        if needed is None:
            return None
        current = needed
    return None


def _interpreter(path: Path) -> Optional[str]:
    """The absolute path the kernel loads to run PATH: the '#!' interpreter, or the ELF
    loader of a dynamically linked program; None for a static program or anything else."""
    with open_host_file(path) as handle:
        head = handle.read(256)  # the kernel reads a '#!' line from as much (BINPRM_BUF_SIZE)
        if head.startswith(b"#!"):
            words = head[2:].split(b"\n", 1)[0].split()
            name = os.fsdecode(words[0]) if words else ""
            return name if name.startswith("/") else None
        if head[:4] != b"\x7fELF" or len(head) < 64 or head[4] not in (1, 2):
            return None
        order = "<" if head[5] == 1 else ">"
        if head[4] == 2:  # ELF64: e_phoff at 32, e_phentsize and e_phnum at 54
            header, entry = order + "32xQ14xHH", order + "I4xQ16xQ"
        else:  # ELF32: e_phoff at 28, e_phentsize and e_phnum at 42
            header, entry = order + "28xI10xHH", order + "II8xI"
        phoff, entsize, count = struct.unpack_from(header, head)
        if not 0 < count <= 256 or entsize < struct.calcsize(entry):
            return None
        handle.seek(phoff)
        table = handle.read(entsize * count)
        for i in range(len(table) // entsize):
            kind, offset, size = struct.unpack_from(entry, table, i * entsize)
            if kind == 3:  # PT_INTERP: p_type, p_offset, p_filesz
                handle.seek(offset)
                name = os.fsdecode(handle.read(min(size, 4096)).split(b"\0", 1)[0])
                return name if name.startswith("/") else None
        return None


@dataclass
class AmpcliResult:
    """One run of `ampcli status`: the parsed status, or why there is none."""

    status: Optional[ConnectorStatus]
    error: Optional[str]  # one of registry.ERROR_REASONS, None on success
    message: str
    duration_seconds: float
    exit_code: Optional[int]  # None: never started, or killed (by us or a signal)
    finished_at: float

    @property
    def ok(self) -> bool:
        return self.status is not None


class AmpcliRunner:
    """Runs PATH status: in the host root ROOTFS as chroot_plan says for MODE (auto, always,
    never). In auto, a root that visibly lacks the interpreter or loader ampcli needs (an
    example host tree, whose stand-in is a script for the exporter's own /bin/sh) is not
    chrooted into: ampcli could not start there, and runs as PATH instead."""

    def __init__(self, path: str, timeout: float, cache_seconds: float, rootfs: str = "/",
                 chroot: str = "auto") -> None:
        self.path = path
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.mode = chroot
        # root: where ampcli runs (None: the exporter's own root); exec_path: its path there.
        self.root, self.exec_path = chroot_plan(path, rootfs, chroot)
        self._lacking: Optional[str] = None  # under _lock: what the root lacked last run
        self._lock = threading.Lock()
        self._last: Optional[AmpcliResult] = None
        self.runs = 0  # how many times ampcli was started (tests and benchmarks read it)
        # Under _lock: the non-zero exit code of the last run that exited, when its status
        # was used (None after any other run that exited). A status printed with a non-zero
        # code is warned about when this changes, not on every scrape.
        self._warned_code: Optional[int] = None

    def status(self) -> AmpcliResult:
        """The latest result, running ampcli only when the cached one is too old.

        The lock makes concurrent scrapes wait for the run in progress and share
        its result instead of each starting its own ampcli: a run that finished after
        this call began was in flight for it, fresh whatever --ampcli.cache says (with
        a cache of 0, 100 scrapes waiting on a 0.5 s ampcli would otherwise take 50 s).
        """
        asked_at = time.monotonic()
        with self._lock:
            last = self._last
            if last is not None and (last.finished_at >= asked_at or
                                     time.monotonic() - last.finished_at < self.cache_seconds):
                return last
            self._last = self._run()
            return self._last

    @property
    def last(self) -> Optional[AmpcliResult]:
        return self._last

    def close(self) -> None:
        pass

    def _where(self) -> Optional[str]:
        """The root this run chroots into (None: none), deciding auto's fallback."""
        if self.root is None or self.mode != "auto":
            return self.root
        lacking = lacking_in_root(self.root, self.exec_path)
        if lacking != self._lacking:
            self._lacking = lacking
            if lacking:
                log.debug("ampcli runs in the exporter's own root: the host root lacks what "
                          "it needs to start there", extra={"root": self.root,
                                                            "lacking": lacking})
            else:
                log.debug("ampcli runs in the host root", extra={"root": self.root})
        return None if lacking else self.root

    def _run(self) -> AmpcliResult:
        self.runs += 1
        start = time.monotonic()

        def result(status, error, message, code=None) -> AmpcliResult:
            now = time.monotonic()
            return AmpcliResult(status, error, message, now - start, code, now)

        root = self._where()
        told = None  # chroot runs: the pipe the helper tells how far it got
        if root is None:
            try:
                proc = _start([self.path, "status"])
            except FileNotFoundError:
                return result(None, "missing", f"{self.path} not found")
            except PermissionError:
                return result(None, "permission", f"{self.path} is not executable by us")
            except OSError as exc:
                return result(None, "exit_status", f"cannot start {self.path}: {exc}")
        else:
            try:
                told, tell = os.pipe()
                try:
                    proc = _start([*helper_argv(), str(tell), root, self.exec_path,
                                   "status"], keep=(tell,))
                finally:
                    os.close(tell)
            except OSError as exc:
                if told is not None:
                    os.close(told)
                return result(None, "internal", "cannot start the helper that runs ampcli in "
                              f"the host root ({sys.executable}): {exc}")

        output, timed_out, truncated = _read_bounded(proc, self.timeout)
        code = _reap(proc)
        if told is not None:
            said = _drain(told)
            if b"!" in said or (said != b"+" and not timed_out):
                return result(None, *self._helper_failure(root, said))
        if timed_out:
            return result(None, "timeout", f"ampcli did not finish within {self.timeout:g}s")
        if truncated:
            return result(None, "parse", f"ampcli printed more than {OUTPUT_LIMIT} bytes")
        if code is None or code < 0:
            name = _signal_name(-code) if code is not None else "a signal"
            said = last_line(output)
            return result(None, "exit_status", f"ampcli was killed by {name}"
                          + (f" after printing {said!r}" if said else ""))
        warned, self._warned_code = self._warned_code, None
        try:
            status = parse_status(output.decode("utf-8", errors="replace"))
        except StatusParseError as exc:
            if code != 0:
                said = last_line(output)
                return result(None, "exit_status", f"ampcli exited with status {code}"
                              + (f" after printing {said!r}" if said else ""), code)
            return result(None, "parse", str(exc), code)
        if code == 0:
            return result(status, None, "ok", code)
        self._warned_code = code
        if code != warned:
            log.warning("ampcli exited non-zero but printed a status; using it",
                        extra={"path": self.path, "exit_code": code})
        return result(status, None, f"ampcli exited with status {code} after printing a "
                      "status; the status was used", code)

    def _helper_failure(self, root: str, said: bytes) -> tuple[str, str]:
        """(error reason, message) for a chroot helper that did not exec ampcli."""
        step, _, number = said.partition(b"!")[2].decode("ascii", "replace").partition(" ")
        if not number.isdigit():
            return "internal", f"the helper that runs ampcli in the host root {root} failed"
        err = int(number)
        why = os.strerror(err)
        where = f"{self.exec_path} in the host root {root}"
        if step == "chroot" and err == errno.EPERM:
            return "permission", (f"cannot run ampcli in the host root {root}: chroot is not "
                                  "permitted (it needs CAP_SYS_CHROOT; or --ampcli.chroot "
                                  "never runs it in the exporter's own root)")
        if step == "exec" and err in (errno.ENOENT, errno.ENOTDIR):
            return "missing", f"{where} not found (or the interpreter or loader it needs)"
        if step == "exec" and err == errno.EACCES:
            return "permission", f"{where} is not executable by us"
        if err in (errno.ENOENT, errno.ENOTDIR):
            return "missing", f"cannot {step} into the host root {root}: {why}"
        if err in (errno.EACCES, errno.EPERM):
            return "permission", f"cannot {step} into the host root {root}: {why}"
        return "exit_status", f"cannot start {where}: {step}: {why}"


def _start(argv: list[str], keep: tuple[int, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_ENV,
        close_fds=True,
        pass_fds=keep,
        start_new_session=True,  # its own process group: we kill its children too
    )


def _drain(fd: int) -> bytes:
    """What the chroot helper wrote: by now it has exec'd (closing its end) or exited."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 256)
    except BlockingIOError:  # only if a process of the group somehow still holds it
        return b""
    finally:
        os.close(fd)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def last_line(output: bytes, limit: int = 120) -> str:
    """The last non-blank line ampcli printed, printable ASCII only and cut to LIMIT: what a
    person needs to tell "Trying to connect..." (no daemon to talk to) from other failures."""
    for raw in reversed(output.splitlines()):
        text = "".join(c for c in raw.decode("ascii", errors="replace") if c.isprintable())
        text = " ".join(text.replace("\ufffd", "").split())
        if text:
            return text[:limit]
    return ""


def _read_bounded(proc: subprocess.Popen, timeout: float) -> tuple[bytes, bool, bool]:
    """Read stdout until EOF, the deadline, or the size cap; kill the group on the last two."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    timed_out = truncated = False
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if not sel.select(remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > OUTPUT_LIMIT:
                truncated = True
                break
    proc.stdout.close()
    if timed_out or truncated:
        _kill_group(proc)
    return b"".join(chunks), timed_out, truncated


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _reap(proc: subprocess.Popen) -> Optional[int]:
    """Wait for ampcli, then kill whatever it left behind in its process group."""
    try:
        code = proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        code = proc.wait()
    _kill_group(proc)  # children that outlived ampcli would pile up scrape after scrape
    return code
