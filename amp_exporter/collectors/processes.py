"""The connector's processes: up, restarts, CPU, memory, threads, open files."""

from __future__ import annotations

import threading

from amp_exporter.host import connector_files
from amp_exporter.host.processes import EXPECTED_PROCESSES, SCAN_SERVICE
from amp_exporter.registry import Collector, counter, gauge, register

NAME = "processes"
P = ("process",)
UP = gauge(NAME, "cisco_amp_process_up", "1 while the connector process runs.", P)
INSTANCES = gauge(NAME, "cisco_amp_process_instances", "How many processes of that name run.", P)
START = gauge(NAME, "cisco_amp_process_start_time_seconds",
              "Start time of the newest process of that name (Unix time).", P)
CPU = counter(NAME, "cisco_amp_process_cpu_seconds",
              "CPU time used by the running processes of that name, by mode (user, system).",
              ("process", "mode"))
RSS = gauge(NAME, "cisco_amp_process_resident_memory_bytes",
            "Resident memory of the processes of that name.", P)
THREADS = gauge(NAME, "cisco_amp_process_threads", "Threads of the processes of that name.", P)
FDS = gauge(NAME, "cisco_amp_process_open_fds",
            "Open file descriptors of the processes of that name.", P)
RESTARTS = counter(NAME, "cisco_amp_process_restarts",
                   "Restarts observed by the exporter (a new PID or start time between "
                   "collections; restarts faster than the scrape interval count once).", P)
SCAN_RESTARTS = counter(NAME, "cisco_amp_scan_service_restarts",
                        "Restarts of the scan service (ampscansvc) observed by the exporter.")


def _known(procs, field: str):
    """The field's values across processes, or None when any process would not tell."""
    values = [getattr(p, field) for p in procs]
    return None if any(v is None for v in values) else values


@register
class ProcessesCollector(Collector):
    name = NAME
    help = "Connector processes (ampdaemon, ampscansvc, ...): up, restarts, CPU, memory, fds."

    def __init__(self, settings, shared) -> None:
        super().__init__(settings, shared)
        # A name once seen keeps its series (up 0 after it exits): no vanishing series.
        self._names: set[str] = set(EXPECTED_PROCESSES)
        self._names_lock = threading.Lock()

    def collect(self):
        snap = self.shared.processes.snapshot()
        if not snap.processes and not connector_files.installed(self.paths):
            return []
        with self._names_lock:
            self._names |= snap.names()
            names = sorted(self._names)
        up, instances, start, cpu, rss, threads, fds, restarts = (
            d.family() for d in (UP, INSTANCES, START, CPU, RSS, THREADS, FDS, RESTARTS))
        for name in names:
            procs = snap.by_name(name)
            up.add_metric([name], 1.0 if procs else 0.0)
            instances.add_metric([name], float(len(procs)))
            restarts.add_metric([name], float(snap.restarts.get(name, 0)))
            if not procs:
                continue
            for family, field, combine in ((start, "start_time", max), (rss, "resident_bytes", sum),
                                           (threads, "threads", sum)):
                known = _known(procs, field)
                if known is not None:
                    family.add_metric([name], float(combine(known)))
            for mode in ("user", "system"):
                known = _known(procs, f"cpu_{mode}_seconds")
                if known is not None:
                    cpu.add_metric([name, mode], sum(known))
            if all(p.fds_readable for p in procs):
                fds.add_metric([name], float(sum(p.open_fds for p in procs)))
        scan_restarts = SCAN_RESTARTS.single(snap.restarts.get(SCAN_SERVICE, 0))
        return [up, instances, start, cpu, rss, threads, fds, restarts, scan_restarts]
