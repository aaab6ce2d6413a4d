"""Running the connector's `ampcli status` safely.

`ampcli` talks to the connector daemon and can block when the daemon is stuck,
so it runs with a deadline, a cap on its output, in its own process group (so
children it leaves behind are killed too), and never more than one at a time:
concurrent scrapes share one run and its cached result.

Its exit codes are not public. A run that exits non-zero but printed a status (known
status keys) is used, with its exit code kept and a warning logged when the code
changes; one that printed no status is a failure, as a run that exits 0 and prints none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Optional

from amp_exporter.host.status import ConnectorStatus, StatusParseError, parse_status

log = logging.getLogger("amp_exporter.host.ampcli")

OUTPUT_LIMIT = 256 * 1024  # real status output is under 2 KiB
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C"}


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
    def __init__(self, path: str, timeout: float, cache_seconds: float) -> None:
        self.path = path
        self.timeout = timeout
        self.cache_seconds = cache_seconds
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

    def _run(self) -> AmpcliResult:
        self.runs += 1
        start = time.monotonic()

        def result(status, error, message, code=None) -> AmpcliResult:
            now = time.monotonic()
            return AmpcliResult(status, error, message, now - start, code, now)

        try:
            proc = subprocess.Popen(
                [self.path, "status"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_ENV,
                close_fds=True,
                start_new_session=True,  # its own process group: we kill its children too
            )
        except FileNotFoundError:
            return result(None, "missing", f"{self.path} not found")
        except PermissionError:
            return result(None, "permission", f"{self.path} is not executable by us")
        except OSError as exc:
            return result(None, "exit_status", f"cannot start {self.path}: {exc}")

        output, timed_out, truncated = _read_bounded(proc, self.timeout)
        code = _reap(proc)
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
