"""Fault 18 (event monitoring overloaded): the event rates the connector has to absorb.

Counted in the kernel by eBPF tracepoints where the host allows it (loaded in the
background by a short-lived child: the first scrapes never wait for it), else from
proc/stat. Rates, top commands and pressure are computed once per window, so concurrent
or frequent scrapes neither double-count nor empty the top table early.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from amp_exporter.causes import UNCHECKED, CauseCollector, Findings
from amp_exporter.host import events
from amp_exporter.registry import CollectorError, counter, gauge, host_error, register

log = logging.getLogger("amp_exporter.host.events")

NAME = "events"
HOST_EVENTS = counter(NAME, "cisco_amp_host_events",
                      "System events of the kinds the connector monitors, by family, since the "
                      "source started (ebpf: since attach; procfs: forks since boot).",
                      ("event",))
SOURCE = gauge(NAME, "amp_exporter_events_source",
               "1 for the active source of event counts (ebpf or procfs), 0 for the other.",
               ("source",))
UNAVAILABLE = gauge(NAME, "amp_exporter_events_ebpf_unavailable",
                    "1 while the eBPF source is not active, with why (" +
                    ", ".join(events.UNAVAILABLE_REASONS) + ").", ("reason",))
TRACEPOINTS = gauge(NAME, "amp_exporter_events_tracepoints_attached",
                    "Tracepoints the eBPF source counts from.")
PRESSURE = gauge(NAME, "cisco_amp_event_pressure_ratio",
                 "Events per second over the last window divided by --events.capacity "
                 "(1 = at capacity; with the procfs source, process events only: a floor).")
CAPACITY = gauge(NAME, "cisco_amp_event_capacity_per_second",
                 "The configured capacity (--events.capacity).")
TOP = gauge(NAME, "cisco_amp_process_event_rate",
            "Events per second of the busiest commands over the last window (top 10, eBPF "
            "source only; an estimate from one event in 16).", ("command",))
DROPPED = counter(NAME, "amp_exporter_events_top_dropped",
                  "Events not attributed to a command because the in-kernel table was full.")
CONTEXT_SWITCHES = counter(NAME, "cisco_amp_host_context_switches",
                           "Context switches since boot (proc/stat ctxt), a cheap activity "
                           "gauge beside the event counts.")
TOP_N = 10


@dataclass
class _Window:
    started: float = 0.0
    totals: dict[str, int] = field(default_factory=dict)
    rates: Optional[dict[str, float]] = None
    top: dict[str, float] = field(default_factory=dict)
    above_since: Optional[float] = None


@register
class EventsCollector(CauseCollector):
    name = NAME
    help = "Fault 18: event rates by family (eBPF tracepoints, else proc/stat), top commands, " \
           "pressure against capacity."
    fault_ids = (18,)

    def __init__(self, settings, shared) -> None:
        super().__init__(settings, shared)
        self._lock = threading.Lock()
        self._window = _Window()
        self._source_name: Optional[str] = None
        self.ebpf: Optional[events.EbpfEvents] = None
        self._static_reason: Optional[str] = None
        if settings.events_source == "procfs":
            self._static_reason = "one_shot" if settings.one_shot else "disabled"
        elif not self.paths.procfs_is_live:
            self._static_reason = "not_live_host"  # a host tree: its kernel is not ours
        else:
            self.ebpf = events.EbpfEvents(settings.events_python, settings.events_load_timeout)

    def close(self) -> None:
        if self.ebpf is not None:
            self.ebpf.close()

    # -- reading -----------------------------------------------------------------------

    def _read(self) -> tuple[str, dict[str, int], int, Optional[dict[str, int]], Optional[int]]:
        """(source, totals, dropped, top since last window or None, context switches)."""
        try:
            proc_totals, ctxt = events.procfs_counts(self.paths)
        except OSError as exc:
            raise host_error(exc, "reading proc/stat") from exc
        except ValueError as exc:
            raise CollectorError("parse", f"proc/stat: {exc}") from exc
        ebpf = self.ebpf
        if ebpf is not None and ebpf.state == "active":
            try:
                totals, dropped = ebpf.counts()
                return "ebpf", totals, dropped, None, ctxt
            except OSError as exc:
                log.error("reading the eBPF maps failed; falling back to procfs",
                          extra={"err": str(exc)})
                ebpf.close()
                ebpf.reason = "read_failed"
        return "procfs", proc_totals, 0, None, ctxt

    def _roll(self, source: str, totals: dict[str, int], now: float) -> _Window:
        """Close the window when it is due: rates, top commands and sustained pressure."""
        w = self._window
        if self._source_name != source:  # a new source: counts are not comparable
            self._source_name = source
            w = self._window = _Window(started=now, totals=dict(totals))
            if source == "ebpf" and self.ebpf is not None:
                self.ebpf.take_top()  # start the top table with the window
            return w
        elapsed = now - w.started
        if elapsed < self.settings.events_window_seconds:
            return w
        w.rates = {k: max(0, v - w.totals.get(k, 0)) / elapsed for k, v in totals.items()}
        if source == "ebpf" and self.ebpf is not None:
            top = self.ebpf.take_top()
            busiest = sorted(top.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]
            w.top = {cmd: count / elapsed for cmd, count in busiest}
        pressure = sum(w.rates.values()) / self.settings.events_capacity_per_second
        if pressure >= self.settings.events_pressure_threshold:
            if w.above_since is None:
                w.above_since = now
        else:
            w.above_since = None
        w.started, w.totals = now, dict(totals)
        return w

    # -- exporting ---------------------------------------------------------------------

    def _families(self) -> tuple[list, bool]:
        """(families, whether pressure has stayed high long enough)."""
        source, totals, dropped, _, ctxt = self._read()
        now = time.monotonic()
        with self._lock:
            w = self._roll(source, totals, now)
            rates = dict(w.rates) if w.rates is not None else None
            top = dict(w.top)
            sustained = (w.above_since is not None and
                         now - w.above_since >= self.settings.events_pressure_for_seconds)
        host = HOST_EVENTS.family()
        for family, count in sorted(totals.items()):
            host.add_metric([family], float(count))
        src = SOURCE.family()
        for name in ("ebpf", "procfs"):
            src.add_metric([name], 1.0 if name == source else 0.0)
        families = [host, src, CAPACITY.single(self.settings.events_capacity_per_second)]
        reason = self._static_reason or (self.ebpf.reason if self.ebpf else None)
        if source != "ebpf" and reason:
            families.append(UNAVAILABLE.single(1, reason))
        if source == "ebpf" and self.ebpf is not None:
            families.append(TRACEPOINTS.single(len(self.ebpf.tracepoints)))
            families.append(DROPPED.single(dropped))
            top_family = TOP.family()
            for command, rate in top.items():
                top_family.add_metric([command], rate)
            families.append(top_family)
        if rates is not None:
            families.append(PRESSURE.single(sum(rates.values()) /
                                            self.settings.events_capacity_per_second))
        if ctxt is not None:
            families.append(CONTEXT_SWITCHES.single(ctxt))
        return families, sustained

    def evidence_without_connector(self):
        return self._families()[0]

    def check(self):
        families, sustained = self._families()
        findings: Findings = {}
        if not any(f.name == PRESSURE.name for f in families):
            # No window closed yet (a one-shot never closes one): pressure is unknown, and
            # its cause is left out rather than reported absent.
            findings[(18, "event_pressure_high")] = UNCHECKED
        if sustained:
            findings[(18, "event_pressure_high")] = (
                f"event pressure at or above {self.settings.events_pressure_threshold:g} of "
                f"capacity for over {self.settings.events_pressure_for_seconds:g}s")
        return findings, families
