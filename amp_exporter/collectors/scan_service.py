"""Faults 6 and 7 (scan service restarting / failed to start): restarts seen, the
process itself, free memory and the definitions files it loads."""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

from amp_exporter.causes import CauseCollector, Findings
from amp_exporter.host import connector_files, linux
from amp_exporter.host.paths import open_host_file
from amp_exporter.host.processes import DAEMON, SCAN_SERVICE
from amp_exporter.registry import CollectorError, gauge, host_error, register

NAME = "scan_service"
DEFS_VERSION = gauge(NAME, "cisco_amp_definitions_version",
                     "Version from each ClamAV definitions file's header, by database (file "
                     "name).", ("database",))
DEFS_BUILT = gauge(NAME, "cisco_amp_definitions_build_timestamp_seconds",
                   "Build time from each definitions file's header, by database.", ("database",))
DEFS_UPDATED = gauge(
    NAME, "cisco_amp_definitions_updated_timestamp_seconds",
    "When each definitions file was last updated, by database: the build time from its ClamAV "
    "header when the header has one, else the file's modification time (a valid file only). "
    "Its age is time() minus this.", ("database",))
DEFS_VALID = gauge(NAME, "cisco_amp_definitions_valid",
                   "1 when the definitions file has a complete ClamAV header and a body.",
                   ("database",))


@register
class ScanServiceCollector(CauseCollector):
    name = NAME
    help = "Fault 6 and 7 causes: scan service restarts and absence, memory, definitions."
    fault_ids = (6, 7)

    def __init__(self, settings, shared) -> None:
        super().__init__(settings, shared)
        # Definitions files are large and rarely change: check each (path, size, mtime) once.
        self._cvd_cache: dict[str, tuple[tuple[int, float], Optional[str], dict]] = {}
        self._cvd_lock = threading.Lock()

    def check(self):
        findings: Findings = {}
        s = self.settings
        snap = self.shared.processes.snapshot()
        cutoff = time.monotonic() - s.scan_restart_window_seconds
        recent = [t for t in snap.recent_restarts.get(SCAN_SERVICE, []) if t >= cutoff]
        if len(recent) >= s.scan_restart_threshold:
            findings[(6, "scan_service_restarts")] = (
                f"{len(recent)} restarts of {SCAN_SERVICE} in the last "
                f"{s.scan_restart_window_seconds:g}s (threshold {s.scan_restart_threshold})"
            )
        if snap.running(DAEMON) and not snap.running(SCAN_SERVICE):
            findings[(7, "scan_service_not_running")] = f"{DAEMON} runs, {SCAN_SERVICE} does not"
        try:
            available = linux.meminfo(self.paths).get("MemAvailable")
        except OSError as exc:
            raise host_error(exc, "reading proc/meminfo") from exc
        except ValueError as exc:
            raise CollectorError("parse", f"proc/meminfo: {exc}") from exc
        if available is not None and available < s.min_available_memory_bytes:
            findings[(7, "low_memory")] = (
                f"MemAvailable {available / 2**20:.0f} MiB < minimum "
                f"{s.min_available_memory_bytes / 2**20:.0f} MiB"
            )
        evidence, invalid = self.definitions()
        if invalid:
            findings[(7, "definitions_invalid")] = "; ".join(invalid)
        return findings, evidence

    def definitions(self) -> tuple[list, list[str]]:
        patterns = self.settings.definitions_glob or connector_files.DEFAULT_DEFINITIONS_GLOBS
        files = connector_files.definitions_files(self.paths, patterns)
        version, built, valid = DEFS_VERSION.family(), DEFS_BUILT.family(), DEFS_VALID.family()
        updated = DEFS_UPDATED.family()
        invalid: list[str] = []
        with self._cvd_lock:
            for path in files:
                problem, header, mtime = self._check_file(path)
                database = os.path.basename(path)
                valid.add_metric([database], 0.0 if problem else 1.0)
                if problem:
                    invalid.append(f"{database}: {problem}")
                if "version" in header:
                    version.add_metric([database], header["version"])
                if "built" in header:
                    built.add_metric([database], header["built"])
                    updated.add_metric([database], header["built"])
                elif not problem and mtime is not None:
                    updated.add_metric([database], mtime)
            for gone in set(self._cvd_cache) - set(files):
                del self._cvd_cache[gone]
        return [version, built, updated, valid], invalid

    def _check_file(self, path: str) -> tuple[Optional[str], dict, Optional[float]]:
        """(what is wrong with PATH or None, its header's fields, its mtime)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return "vanished", {}, None
        except OSError as exc:
            raise host_error(exc, "reading definitions") from exc
        key = (st.st_size, st.st_mtime)
        cached = self._cvd_cache.get(path)
        if cached and cached[0] == key:
            return cached[1], cached[2], st.st_mtime
        try:
            with open_host_file(path) as f:
                head = f.read(connector_files.CVD_HEADER_SIZE)
        except OSError as exc:
            raise host_error(exc, "reading definitions") from exc
        problem = connector_files.check_cvd_header(head, st.st_size)
        header = connector_files.parse_cvd_header(head) if problem != "truncated" else {}
        self._cvd_cache[path] = (key, problem, header)
        return problem, header, st.st_mtime
