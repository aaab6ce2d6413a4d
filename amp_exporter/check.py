"""`amp-exporter check`: a human report of this host, from the same collectors as /metrics.

The first line is the verdict with the next step, so that a person (or a script reading
one line) knows at once: OK, PROBLEM (faults or causes), CRITICAL (the connector daemon is
down or does not answer), NOT PROTECTED (no connector) or UNKNOWN (the exporter could not
ask). Exit 0 only for OK.

`report` makes the report as data; `run` prints it, and the status page at `/`
(statuspage.py) renders the same data as HTML: one verdict, decided here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, TextIO

from amp_exporter.catalog import CONNECTOR_STATES_BY_NAME, FAULTS, FAULTS_BY_ID, Cause, Fault
from amp_exporter.causes import CauseCollector
from amp_exporter.scrape import Exporter

SEVERITY_WORDS = {0: "none", 1: "minor", 2: "major", 3: "critical"}


@dataclass
class FaultReport:
    """One fault as `check` sees it: a catalog fault (FAULT set) or one the catalog does
    not know that the connector raises."""

    id: int
    title: str
    status: str  # RAISED (major), clear, clear but a cause is present, unknown ...
    raised: bool
    severity: Optional[str] = None  # the connector's word, when raised
    message: Optional[str] = None  # what the connector says of it
    causes: list[tuple[Cause, str]] = field(default_factory=list)  # (cause, what was found)
    fault: Optional[Fault] = None

    @property
    def actions(self) -> tuple[str, ...]:
        """What to do, when the connector raises it."""
        return self.fault.actions if self.raised and self.fault is not None else ()

    @property
    def of_concern(self) -> bool:
        """Raised, or clear with a cause present: worth a person's look."""
        return self.raised or bool(self.causes)


@dataclass
class CollectorRun:
    name: str
    ok: bool
    seconds: float
    reason: Optional[str] = None  # why it failed, when known (registry.ERROR_REASONS)


@dataclass
class Report:
    rootfs: str
    state: Optional[str]  # cisco_amp_connector_state, None when the connector is not asked
    connector: Optional[str]  # "installed, connected, DEGRADED mode", ...
    ampcli: Optional[str]  # what is worth saying about the ampcli run
    monitoring: Optional[str]
    faults: list[FaultReport]
    problems: list[str]
    failed: list[str]
    collectors: list[CollectorRun]
    values: dict[str, dict[tuple, float]]  # every sample of the run
    headline: str = ""
    healthy: bool = False

    @property
    def verdict(self) -> str:
        """The headline's first words: OK, PROBLEM, CRITICAL, NOT PROTECTED or UNKNOWN."""
        return self.headline.partition(":")[0]

    def value(self, name: str, **labels) -> Optional[float]:
        return self.values.get(name, {}).get(tuple(sorted(labels.items())))


def _samples(families) -> dict[str, dict[tuple, float]]:
    values: dict[str, dict[tuple, float]] = {}
    for family in families:
        for s in family.samples:
            values.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return values


def report(exporter: Exporter) -> Report:
    """Run every collector once, as a scrape does, and judge the host."""
    families, failed, details, runs = [], [], {}, []
    exporter.shared.begin_scrape()
    for collector in exporter.collectors:
        got, reason, seconds = exporter.run_collector(collector)
        families.extend(got)
        ok = reason is None
        if not ok:
            failed.append(collector.name)
        elif isinstance(collector, CauseCollector):
            findings, _ = collector.findings()
            details.update((k, v) for k, v in findings.items() if v is not None)
        runs.append(CollectorRun(collector.name, ok, seconds, reason))
    values = _samples(families)

    def value(name: str, **labels) -> Optional[float]:
        return values.get(name, {}).get(tuple(sorted(labels.items())))

    last = exporter.shared.ampcli.last
    messages = ({fid: f.message for fid, f in last.status.faults.items() if f.message}
                if last is not None and last.status is not None else {})
    states = [dict(k)["state"] for k, v in values.get("cisco_amp_connector_state", {}).items()
              if v == 1]
    state = states[0] if states else None
    if state is None and "connector" in failed:
        state = "unknown"  # the collector could not even tell whether it is installed

    problems: list[str] = []
    connector = ampcli = monitoring = None
    if state == "not_installed":
        connector = "not installed (no opt/cisco/amp/bin/ampdaemon)."
    elif state is not None:
        connected = value("cisco_amp_connector_connected")
        degraded = value("cisco_amp_connector_degraded")
        said = {"answering": {1.0: "connected", 0.0: "DISCONNECTED",
                              None: "connection unknown"}[connected],
                "daemon_not_running": "DAEMON NOT RUNNING",
                "not_answering": "NOT ANSWERING ampcli status",
                "unknown": "state unknown"}[state]
        connector = "installed, " + said + (", DEGRADED mode" if degraded == 1 else "")
        if state == "answering" and connected == 0:
            problems.append("the connector is disconnected from the Cisco cloud")
        if state in ("not_answering", "unknown") and last is not None and not last.ok:
            ampcli = last.message
        elif last is not None and last.ok and last.exit_code:
            ampcli = (f"exited with status {last.exit_code} but printed a status; "
                      "it is used")
        if "cisco_amp_monitoring_machinery" in values:  # the kernel collector ran
            used = exporter.shared.machinery()  # this scrape's, already decided
            monitoring = (f"files by {used.file} ({used.why['file']}); network "
                          f"by {used.network} ({used.why['network']}); eBPF {used.ebpf} "
                          f"({used.why['ebpf']})")

    faults: list[FaultReport] = []
    reported = {dict(k)["fault_id"]: v for k, v in values.get("cisco_amp_fault_active",
                                                              {}).items()}
    for fault in FAULTS:
        fid = str(fault.id)
        active = reported.get(fid)
        found = [(c, details[(fault.id, c.name)]) for c in fault.causes
                 if (fault.id, c.name) in details]
        sev = None
        if active == 1:
            sev = SEVERITY_WORDS.get(int(value("cisco_amp_fault_severity", fault_id=fid) or 0))
            status = f"RAISED ({sev})"
            problems.append(f"fault {fault.id} raised ({sev})")
        elif active is None:
            status = "unknown (ampcli did not answer)"
        else:
            status = "clear" + (", but a cause is present" if found else "")
            if found:
                problems.append(f"fault {fault.id}: a cause is present")
        faults.append(FaultReport(fault.id, fault.title, status, active == 1, sev,
                                  messages.get(fault.id),
                                  found if active == 1 or found else [], fault))
    unknown = sorted((fid for fid, v in reported.items()
                      if v == 1 and int(fid) not in FAULTS_BY_ID), key=int)
    for fid in unknown:
        problems.append(f"fault {fid} raised (not in the catalog)")
        sev = SEVERITY_WORDS.get(int(value("cisco_amp_fault_severity", fault_id=fid) or 0))
        faults.append(FaultReport(int(fid), "(not in the catalog)", "RAISED", True, sev,
                                  messages.get(int(fid))))

    result = Report(str(exporter.settings.paths.rootfs), state, connector, ampcli, monitoring,
                    faults, problems, failed, runs, values)
    result.headline = headline(state, problems, failed)
    result.healthy = (state in (None, "answering")) and not problems
    return result


def text(r: Report) -> str:
    """The report as `check` prints it, verdict first."""
    body: list[str] = [f"Host root: {r.rootfs}\n"]
    if r.connector is not None:
        body.append(f"Connector: {r.connector}\n")
    if r.ampcli is not None:
        body.append(f"ampcli: {r.ampcli}\n")
    if r.monitoring is not None:
        body.append(f"Monitoring: {r.monitoring}\n")
    body.append("\n")
    for f in r.faults:
        if f.fault is None:
            body.append(f"[{f.id:>2}] (not in the catalog): RAISED\n")
            if f.message:
                body.append(f"     connector says: {f.message}\n")
            continue
        body.append(f"[{f.id:>2}] {f.title}: {f.status}\n")
        if f.message:
            body.append(f"     connector says: {f.message}\n")
        for cause, detail in f.causes:
            body.append(f"     cause: {detail}\n       fix: {cause.remedy}\n")
        if f.raised:
            if not f.causes:
                body.append("     no cause found by the exporter's own checks\n")
            for action in f.actions:
                body.append(f"     - {action}\n")
    if r.failed:
        body.append("\nChecks that could not run (see the log above): " + ", ".join(r.failed)
                    + "\n")
    return (r.headline + "\n" + "".join(body) + "\n"
            + ("Healthy.\n" if r.healthy else "Not healthy: see the first line.\n"))


def run(exporter: Exporter, out: TextIO) -> int:
    r = report(exporter)
    out.write(text(r))
    return 0 if r.healthy else 1
def headline(state: Optional[str], problems: list[str], failed: list[str]) -> str:
    """The verdict in one line, with what to do next."""
    if state not in (None, "answering"):
        known = CONNECTOR_STATES_BY_NAME[state]
        return f"{known.headline} Next: {known.next_step}"
    if problems:
        return (f"PROBLEM: {len(problems)} problem(s): " + "; ".join(problems) +
                ". Next: the causes and steps below, per fault.")
    skipped = f" ({len(failed)} check(s) could not run: {', '.join(failed)})" if failed else ""
    if state is None:
        return f"OK: no cause found; the connector was not asked (collector off){skipped}."
    return f"OK: the connector answers and reports no fault; no cause found{skipped}."
