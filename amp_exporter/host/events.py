"""Sources of system-event counts: eBPF through the loader child, or /proc as a fallback.

EbpfEvents owns the fds the loader hands over and reads the maps with the bpf() syscall;
the serving process never imports bcc. ProcfsEvents reads `proc/stat`, which every host
has, for what it can count (forks, context switches).

The loader runs under the Python that has the host's bcc (--events.python, else the first
of bcc_python_candidates() that can import it, found in the background at start-up):
bcc is a distribution package, bound to the distribution's own Python, which need not be
the one serving (a virtualenv, RHEL 8's platform-python 3.6, a frozen build).
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Optional

from amp_exporter.host import bpfsys, ebpf_program
from amp_exporter.host.paths import HostPaths, read_text

log = logging.getLogger("amp_exporter.host.events")

# Why the eBPF source is not active: a bounded vocabulary for a label.
UNAVAILABLE_REASONS = ("starting", "disabled", "one_shot", "not_live_host", "no_tracefs",
                       "no_headers", "no_bcc", "no_tracepoints", "permission", "compile_failed",
                       "loader_failed", "timeout", "read_failed")
# The directory that holds the amp_exporter package (this file is amp_exporter/host/...),
# put on the loader's PYTHONPATH. In a PyInstaller build __file__ lies under sys._MEIPASS,
# where the build puts the plain source of the loader's modules for the host's Python.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Exits 0 when bcc can be imported (without importing it: that costs ~65 MiB and a second).
_HAS_BCC = "import importlib.util,sys; sys.exit(importlib.util.find_spec('bcc') is None)"
AUTO = ("", "auto")  # --events.python values that ask for the search


def bcc_python_candidates() -> list[str]:
    """Where a distribution's Python with bcc may be, most likely first: this Python
    (unless frozen: then it is no Python), RHEL 8's platform-python, the distribution's
    python3 and python3.N (newest first), a locally built one."""
    found = [] if getattr(sys, "frozen", False) else [sys.executable]
    found += ["/usr/libexec/platform-python", "/usr/bin/python3"]
    versioned = [p for p in glob.glob("/usr/bin/python3.*")
                 if re.fullmatch(r"python3\.\d+", os.path.basename(p))]
    found += sorted(versioned, key=lambda p: -int(p.rsplit(".", 1)[1]))
    found.append("/usr/local/bin/python3")
    return list(dict.fromkeys(p for p in found if p))


def child_env(pythonpath: Optional[str] = None) -> dict[str, str]:
    """The environment for a Python we start: ours, but a frozen build's bundled library
    path (PyInstaller's LD_LIBRARY_PATH, the original kept in LD_LIBRARY_PATH_ORIG) is
    undone, or the host's Python would load our bundled libraries."""
    env = dict(os.environ)
    if getattr(sys, "frozen", False):
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        env.pop("LD_LIBRARY_PATH", None)
        if original:
            env["LD_LIBRARY_PATH"] = original
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (pythonpath, os.environ.get("PYTHONPATH", "")) if p)
    return env


def find_bcc_python(candidates: list[str], timeout: float = 10.0
                    ) -> tuple[Optional[str], list[str]]:
    """(the first candidate that can import bcc or None, what was found of each tried)."""
    tried = []
    for python in candidates:
        if not os.access(python, os.X_OK):
            tried.append(f"{python} (not found)")
            continue
        try:
            result = subprocess.run([python, "-I", "-c", _HAS_BCC], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env=child_env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            tried.append(f"{python} (no answer in {timeout:g} s)")
            continue
        except OSError as exc:
            tried.append(f"{python} ({exc.strerror or exc})")
            continue
        if result.returncode == 0:
            return python, tried
        tried.append(f"{python} (no bcc)")
    return None, tried


def receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """The loader's one message (ebpf_loader.send): the JSON header and the fds."""
    message, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 255)
    return message, fds


class EbpfEvents:
    def __init__(self, python: Optional[str], timeout: float) -> None:
        """PYTHON runs the loader; None, "" or "auto": the first Python found with bcc."""
        self.python = None if python in (None, *AUTO) else python
        self.loader: dict[str, str] = {}  # the loader's python and bcc versions, once active
        self.timeout = timeout
        self.state = "starting"  # starting | active | unavailable
        self.reason = "starting"
        self.message = ""  # why it is unavailable, in words
        self.tracepoints: list[str] = []
        self.load_seconds: Optional[float] = None
        self._fds: list[int] = []
        self._counts: Optional[bpfsys.PerCPUMap] = None
        self._by_comm: Optional[bpfsys.PerCPUMap] = None
        self._lock = threading.Lock()
        self._closed = False
        self._loader: Optional[subprocess.Popen] = None  # while it runs
        self._thread = threading.Thread(target=self._load, name="ebpf-loader", daemon=True)
        self._thread.start()

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until loading finished (tests and `check`; scrapes never wait)."""
        self._thread.join(timeout)

    def _fail(self, reason: str, message: str) -> None:
        with self._lock:
            if self._closed:  # stopped while loading: the loader was ended on purpose
                return
            self.state, self.reason, self.message = "unavailable", reason, message
        log.warning("eBPF event source unavailable, using procfs",
                    extra={"reason": reason, "err": message})

    def _load(self) -> None:
        start = time.monotonic()
        if self.python is None:
            python, tried = find_bcc_python(bcc_python_candidates(), min(10.0, self.timeout))
            if python is None:
                return self._fail("no_bcc", "no Python that can import bcc (install "
                                  "python3-bpfcc, or name one with --events.python); tried "
                                  + ", ".join(tried))
            log.info("eBPF loader Python found", extra={"python": python,
                                                        "skipped": "; ".join(tried) or "none"})
            self.python = python
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "amp_exporter.host.ebpf_loader", str(child.fileno()),
                 str(os.getpid())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                env=child_env(_PACKAGE_PARENT))
        except OSError as exc:
            parent.close()
            child.close()
            return self._fail("loader_failed", f"cannot start {self.python}: {exc}")
        child.close()
        with self._lock:
            self._loader = proc
            closed = self._closed
        if closed:  # the exporter stopped while the loader was being started
            proc.kill()
        try:
            parent.settimeout(self.timeout)
            message, fds = receive(parent)
        except (OSError, socket.timeout) as exc:
            proc.kill()
            proc.wait()
            reason = "timeout" if isinstance(exc, socket.timeout) else "loader_failed"
            return self._fail(reason, f"no answer from the loader: {exc}")
        finally:
            parent.close()
        try:
            _, stderr = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        with self._lock:
            self._loader = None
        try:
            header = json.loads(message.decode() or "{}")
        except ValueError:
            header = {}
        if not header.get("ok"):
            for fd in fds:
                os.close(fd)
            detail = header.get("message") or stderr.decode(errors="replace")[-500:]
            return self._fail(header.get("reason", "loader_failed"), detail)
        cpus = bpfsys.possible_cpus()
        with self._lock:
            if self._closed:
                for fd in fds:
                    os.close(fd)
                return None
            self._fds = fds
            self._counts = bpfsys.PerCPUMap(fds[0], 4, cpus)
            self._by_comm = bpfsys.PerCPUMap(fds[1], ebpf_program.COMM_LEN, cpus)
            self.tracepoints = header.get("tracepoints", [])
            self.loader = {"python": self.python, "python_version": header.get("python", ""),
                           "bcc": header.get("bcc", "")}
            self.state, self.reason = "active", ""
            self.load_seconds = time.monotonic() - start
        log.info("eBPF event source active", extra={
            "tracepoints": len(self.tracepoints), "seconds": round(self.load_seconds, 3),
            **self.loader})
        return None

    def counts(self) -> tuple[dict[str, int], int]:
        """({family: events since attach}, hits dropped from the top-processes table)."""
        with self._lock:
            counts = self._counts
            assert counts is not None
            values = [counts.lookup(struct.pack("I", i)) or 0
                      for i in range(len(ebpf_program.FAMILY_NAMES) + 1)]
        return dict(zip(ebpf_program.FAMILY_NAMES, values)), values[ebpf_program.DROPPED_SLOT]

    def take_top(self) -> dict[str, int]:
        """Events per command since the last call; the table is emptied, so it stays small."""
        with self._lock:
            table = self._by_comm
            assert table is not None
            counts: dict[str, int] = {}
            for key in table.keys(ebpf_program.TOP_ENTRIES * 2):
                value = table.lookup(key)
                table.delete(key)
                if value:
                    name = key.split(b"\0", 1)[0].decode("utf-8", errors="replace") or "?"
                    counts[name] = counts.get(name, 0) + value
        return counts

    def close(self) -> None:
        """Close every handed-over fd: the kernel then detaches and unloads the programs."""
        with self._lock:
            self._closed = True
            if self._loader is not None and self._loader.poll() is None:
                # Still compiling (bcc takes seconds): end it now rather than let it
                # finish and attach probes for an exporter that is shutting down.
                self._loader.kill()
            fds, self._fds = self._fds, []
            self._counts = self._by_comm = None
            if self.state in ("active", "starting"):
                self.state, self.reason = "unavailable", "disabled"
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def procfs_counts(paths: HostPaths) -> tuple[dict[str, int], Optional[int]]:
    """({family: count since boot} for what proc/stat can tell, context switches)."""
    families: dict[str, int] = {}
    ctxt = None
    for line in read_text(paths.proc("stat"), 1 << 20).splitlines():
        key, _, value = line.partition(" ")
        if key == "processes":
            families["process_fork"] = int(value)
        elif key == "ctxt":
            ctxt = int(value)
    if not families:
        raise ValueError("no 'processes' line in proc/stat")
    return families, ctxt
