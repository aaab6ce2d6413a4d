"""Sources of system-event counts: eBPF through the loader child, or /proc as a fallback.

EbpfEvents owns the fds the loader hands over and reads the maps with the bpf() syscall;
the serving process never imports bcc. ProcfsEvents reads `proc/stat`, which every host
has, for what it can count (forks, context switches).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import subprocess
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
# The directory that holds the amp_exporter package (this file is amp_exporter/host/...).
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class EbpfEvents:
    def __init__(self, python: str, timeout: float) -> None:
        self.python = python
        self.timeout = timeout
        self.state = "starting"  # starting | active | unavailable
        self.reason = "starting"
        self.tracepoints: list[str] = []
        self.load_seconds: Optional[float] = None
        self._fds: list[int] = []
        self._counts: Optional[bpfsys.PerCPUMap] = None
        self._by_comm: Optional[bpfsys.PerCPUMap] = None
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._load, name="ebpf-loader", daemon=True)
        self._thread.start()

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until loading finished (tests and `check`; scrapes never wait)."""
        self._thread.join(timeout)

    def _fail(self, reason: str, message: str) -> None:
        with self._lock:
            self.state, self.reason = "unavailable", reason
        log.warning("eBPF event source unavailable, using procfs",
                    extra={"reason": reason, "err": message})

    def _load(self) -> None:
        start = time.monotonic()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (_PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")) if p)}
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "amp_exporter.host.ebpf_loader", str(child.fileno()),
                 str(os.getpid())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        except OSError as exc:
            parent.close()
            child.close()
            return self._fail("loader_failed", f"cannot start {self.python}: {exc}")
        child.close()
        try:
            parent.settimeout(self.timeout)
            message, fds, _flags, _addr = socket.recv_fds(parent, 1 << 16, 255)
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
            self.state, self.reason = "active", ""
            self.load_seconds = time.monotonic() - start
        log.info("eBPF event source active", extra={
            "tracepoints": len(self.tracepoints), "seconds": round(self.load_seconds, 3)})
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
            fds, self._fds = self._fds, []
            self._counts = self._by_comm = None
            if self.state == "active":
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
