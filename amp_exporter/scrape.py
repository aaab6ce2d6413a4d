"""The scrape loop: run every enabled collector, time it, turn a failing one into
`amp_exporter_scrape_collector_success 0` (and an error count by reason) instead of a
failed scrape, and add what needs no collector (build info, the catalog's titles, and in
`serve` the exporter process's own process_* metrics).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Optional

from amp_exporter.exposition import Family
from amp_exporter.host.self import SelfProcess
from amp_exporter.registry import (
    ERROR_REASONS,
    Collector,
    CollectorError,
    Desc,
    Settings,
    SharedState,
    counter,
    gauge,
    host_error,
    registered,
)

log = logging.getLogger("amp_exporter")


def available() -> dict[str, type[Collector]]:
    import amp_exporter.collectors  # noqa: F401  (registers every collector)

    return registered()


SUCCESS = gauge("", "amp_exporter_scrape_collector_success",
                "1 when the collector's last run succeeded, 0 when it failed.", ("collector",))
DURATION = gauge("", "amp_exporter_scrape_collector_duration_seconds",
                 "How long the collector's last run took.", ("collector",))
ERRORS = counter("", "amp_exporter_collector_errors",
                 "Collector runs that failed, by collector and reason (" +
                 ", ".join(ERROR_REASONS) + ").", ("collector", "reason"))
BUILD_INFO = gauge("", "amp_exporter_build_info",
                   "amp-exporter's version and the Python running it (always 1).",
                   ("version", "python"))
TEXTFILE_WRITTEN = gauge("", "amp_exporter_textfile_write_timestamp_seconds",
                        "amp-exporter textfile only: when it wrote this exposition (Unix time); "
                        "node_exporter serves an old file as if new, so alerts check its age.")
FAULT_INFO = gauge("", "cisco_amp_fault_info",
                   "The catalog's title of each known fault (always 1).", ("fault_id", "title"))

# The exporter process itself, under the names and meanings every Prometheus client gives
# them (client_golang's and client_python's process collector), so the usual queries and
# dashboards for an exporter's own health work unchanged. `serve` only: a `textfile` run
# lives for a moment, and its process_* would clash in node_exporter's scrape with
# node_exporter's own. Declared outside registry.DESCS, whose names are all ours
# (cisco_amp_*, amp_exporter_*): PROCESS_DESCS lists them for the docs.
PROCESS_CPU = Desc("process_cpu_seconds", "counter",
                   "Total user and system CPU time spent in seconds.")
PROCESS_RESIDENT = Desc("process_resident_memory_bytes", "gauge",
                        "Resident memory size in bytes.")
PROCESS_VIRTUAL = Desc("process_virtual_memory_bytes", "gauge",
                       "Virtual memory size in bytes.")
PROCESS_START = Desc("process_start_time_seconds", "gauge",
                     "Start time of the process since unix epoch in seconds.")
PROCESS_OPEN_FDS = Desc("process_open_fds", "gauge", "Number of open file descriptors.")
PROCESS_MAX_FDS = Desc("process_max_fds", "gauge",
                       "Maximum number of open file descriptors.")
PROCESS_DESCS = (PROCESS_CPU, PROCESS_OPEN_FDS, PROCESS_MAX_FDS, PROCESS_RESIDENT,
                 PROCESS_START, PROCESS_VIRTUAL)


class Exporter:
    """Runs every enabled collector per scrape, and adds what needs no collector."""

    def __init__(self, settings: Settings, enabled: Iterable[str]) -> None:
        registry = available()
        self.settings = settings
        self.shared = SharedState(settings)
        enabled = list(enabled)
        self.collectors: list[Collector] = [registry[n](settings, self.shared) for n in enabled]
        self.shared.use_ampcli = "connector" in enabled
        self._errors: dict[tuple[str, str], int] = {}
        self._errors_lock = threading.Lock()
        for c in self.collectors:
            for reason in ERROR_REASONS:
                self._errors[(c.name, reason)] = 0
        self.own_process: Optional[SelfProcess] = None
        if not settings.one_shot:
            try:
                self.own_process = SelfProcess()
            except (OSError, ValueError) as exc:  # no /proc of our own (it is not mounted)
                log.warning("no process_* metrics: cannot read our own /proc",
                            extra={"err": str(exc)})

    def run_collector(self, collector: Collector) -> tuple[list[Family], Optional[str], float]:
        """(its families, why it failed — one of ERROR_REASONS — or None, seconds)."""
        start = time.perf_counter()
        failed: Optional[str] = None
        try:
            families = list(collector.collect())
        except CollectorError as exc:
            families, failed = exc.partial, exc.reason
            self._count_error(collector.name, exc.reason)
            log.error("collector failed", extra={"collector": collector.name,
                                                 "reason": exc.reason, "err": str(exc)})
        except OSError as exc:  # a host file we could not read, outside a collector's own care
            error = host_error(exc, "reading the host")
            families, failed = [], error.reason
            self._count_error(collector.name, error.reason)
            log.error("collector failed", extra={"collector": collector.name,
                                                 "reason": error.reason, "err": str(error)})
        except Exception as exc:  # a bug or a host surprise must not fail the scrape
            families, failed = [], "internal"
            self._count_error(collector.name, "internal")
            log.exception("collector crashed", extra={"collector": collector.name,
                                                      "err": repr(exc)})
        return families, failed, time.perf_counter() - start

    def _count_error(self, collector: str, reason: str) -> None:
        with self._errors_lock:
            self._errors[(collector, reason)] = self._errors.get((collector, reason), 0) + 1

    def collect(self) -> Iterator[Family]:
        success = SUCCESS.family()
        duration = DURATION.family()
        merged: dict[str, Family] = {}
        self.shared.begin_scrape()
        for collector in self.collectors:
            families, failed, seconds = self.run_collector(collector)
            success.add_metric([collector.name], 0.0 if failed else 1.0)
            duration.add_metric([collector.name], seconds)
            for family in families:
                # Two collectors may add to one family (fault causes): one HELP line each.
                if family.name in merged:
                    merged[family.name].extend(family)
                else:
                    merged[family.name] = family
        yield from merged.values()
        yield from static_families()
        yield from self.process_families()
        yield success
        yield duration
        errors = ERRORS.family()
        with self._errors_lock:
            for (name, reason), count in sorted(self._errors.items()):
                errors.add_metric([name, reason], count)
        yield errors

    def process_families(self) -> list[Family]:
        """process_* of this process (serve only); none when /proc/self cannot be read."""
        if self.own_process is None:
            return []
        try:
            now = self.own_process.sample()
        except (OSError, ValueError) as exc:
            log.debug("no process_* metrics this scrape", extra={"err": str(exc)})
            return []
        families = [PROCESS_CPU.single(now.cpu_seconds),
                    PROCESS_OPEN_FDS.single(now.open_fds)]
        if now.max_fds is not None:
            families.append(PROCESS_MAX_FDS.single(now.max_fds))
        families += [PROCESS_RESIDENT.single(now.resident_bytes),
                     PROCESS_START.single(now.start_time_seconds),
                     PROCESS_VIRTUAL.single(now.virtual_bytes)]
        return families

    def close(self) -> None:
        for c in self.collectors:
            try:
                c.close()
            except Exception:
                log.exception("closing collector failed", extra={"collector": c.name})
        self.shared.close()


@functools.lru_cache(maxsize=1)
def static_families() -> tuple[Family, ...]:
    """Facts about the exporter and its catalog that need no collector to run: the same
    at every scrape, so made once (nothing adds to a family once it is yielded)."""
    import platform

    from amp_exporter import __version__
    from amp_exporter.catalog import FAULTS

    build = BUILD_INFO.single(1, __version__, platform.python_version())
    info = FAULT_INFO.family()
    for f in FAULTS:
        info.add_metric([str(f.id), f.title], 1.0)
    return build, info


def resolve_enabled(
    choices: dict[str, Optional[bool]], disable_defaults: bool
) -> list[str]:
    """Which collectors run: defaults, minus --no-collector.X, plus --collector.X."""
    names = []
    for name, cls in available().items():
        chosen = choices.get(name)
        if chosen is None:
            chosen = cls.default_enabled and not disable_defaults
        if chosen:
            names.append(name)
    return names


