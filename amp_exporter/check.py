"""`amp-exporter check`: a human report of this host, from the same collectors as /metrics.

The first line is the verdict with the next step, so that a person (or a script reading
one line) knows at once: OK, PROBLEM (faults or causes), CRITICAL (the connector daemon is
down or does not answer), NOT PROTECTED (no connector) or UNKNOWN (the exporter could not
ask). Exit 0 only for OK.
"""

from __future__ import annotations

from typing import Optional, TextIO

from amp_exporter.catalog import CONNECTOR_STATES_BY_NAME, FAULTS, FAULTS_BY_ID
from amp_exporter.causes import CauseCollector
from amp_exporter.scrape import Exporter

SEVERITY_WORDS = {0: "none", 1: "minor", 2: "major", 3: "critical"}


def _samples(families) -> dict[str, dict[tuple, float]]:
    values: dict[str, dict[tuple, float]] = {}
    for family in families:
        for s in family.samples:
            values.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return values


def run(exporter: Exporter, out: TextIO) -> int:
    families, failed, details = [], [], {}
    exporter.shared.begin_scrape()
    for collector in exporter.collectors:
        got, ok, _ = exporter.run_collector(collector)
        families.extend(got)
        if not ok:
            failed.append(collector.name)
        elif isinstance(collector, CauseCollector):
            findings, _ = collector.findings()
            details.update((k, v) for k, v in findings.items() if v is not None)
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

    body: list[str] = [f"Host root: {exporter.settings.paths.rootfs}\n"]
    problems: list[str] = []
    if state == "not_installed":
        body.append("Connector: not installed (no opt/cisco/amp/bin/ampdaemon).\n")
    elif state is not None:
        connected = value("cisco_amp_connector_connected")
        degraded = value("cisco_amp_connector_degraded")
        said = {"answering": {1.0: "connected", 0.0: "DISCONNECTED",
                              None: "connection unknown"}[connected],
                "daemon_not_running": "DAEMON NOT RUNNING",
                "not_answering": "NOT ANSWERING ampcli status",
                "unknown": "state unknown"}[state]
        body.append("Connector: installed, " + said
                    + (", DEGRADED mode" if degraded == 1 else "") + "\n")
        if state == "answering" and connected == 0:
            problems.append("the connector is disconnected from the Cisco cloud")
        if state in ("not_answering", "unknown") and last is not None and not last.ok:
            body.append(f"ampcli: {last.message}\n")
        elif last is not None and last.ok and last.exit_code:
            body.append(f"ampcli: exited with status {last.exit_code} but printed a status; "
                        "it is used\n")
        if "cisco_amp_monitoring_machinery" in values:  # the kernel collector ran
            used = exporter.shared.machinery()  # this scrape's, already decided
            body.append(f"Monitoring: files by {used.file} ({used.why['file']}); network "
                        f"by {used.network} ({used.why['network']}); eBPF {used.ebpf} "
                        f"({used.why['ebpf']})\n")
    body.append("\n")

    reported = {dict(k)["fault_id"]: v for k, v in values.get("cisco_amp_fault_active",
                                                              {}).items()}
    for fault in FAULTS:
        fid = str(fault.id)
        active = reported.get(fid)
        found = [(c, details[(fault.id, c.name)]) for c in fault.causes
                 if (fault.id, c.name) in details]
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
        body.append(f"[{fault.id:>2}] {fault.title}: {status}\n")
        if fault.id in messages:
            body.append(f"     connector says: {messages[fault.id]}\n")
        if active == 1 or found:
            for cause, detail in found:
                body.append(f"     cause: {detail}\n       fix: {cause.remedy}\n")
            if active == 1:
                if not found:
                    body.append("     no cause found by the exporter's own checks\n")
                for action in fault.actions:
                    body.append(f"     - {action}\n")
    unknown = sorted((fid for fid, v in reported.items()
                      if v == 1 and int(fid) not in FAULTS_BY_ID), key=int)
    for fid in unknown:
        problems.append(f"fault {fid} raised (not in the catalog)")
        body.append(f"[{fid:>2}] (not in the catalog): RAISED\n")
        if int(fid) in messages:
            body.append(f"     connector says: {messages[int(fid)]}\n")
    if failed:
        body.append("\nChecks that could not run (see the log above): " + ", ".join(failed)
                    + "\n")

    out.write(headline(state, problems, failed) + "\n")
    out.write("".join(body))
    healthy = (state in (None, "answering")) and not problems
    out.write("\n" + ("Healthy.\n" if healthy else "Not healthy: see the first line.\n"))
    return 0 if healthy else 1


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
