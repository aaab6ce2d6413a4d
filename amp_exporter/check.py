"""`amp-exporter check`: a human report of this host, from the same collectors as /metrics."""

from __future__ import annotations

from typing import Optional, TextIO

from amp_exporter.catalog import FAULTS, FAULTS_BY_ID
from amp_exporter.causes import CauseCollector
from amp_exporter.registry import Exporter

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
            details.update(findings)
    values = _samples(families)

    def value(name: str, **labels) -> Optional[float]:
        return values.get(name, {}).get(tuple(sorted(labels.items())))

    last = exporter.shared.ampcli.last
    messages = ({fid: f.message for fid, f in last.status.faults.items() if f.message}
                if last is not None and last.status is not None else {})
    problems = 0
    installed = value("cisco_amp_connector_installed")
    out.write(f"Host root: {exporter.settings.paths.rootfs}\n")
    if installed == 0:
        out.write("Connector: not installed (no opt/cisco/amp/bin/ampdaemon); nothing to check.\n")
    else:
        connected = value("cisco_amp_connector_connected")
        degraded = value("cisco_amp_connector_degraded")
        out.write("Connector: installed, "
                  + {1.0: "connected", 0.0: "DISCONNECTED", None: "connection unknown"}[connected]
                  + (", DEGRADED mode" if degraded == 1 else "") + "\n")
        problems += connected == 0
        gens = [dict(k)["generation"] for k, v in values.get(
            "cisco_amp_monitoring_generation", {}).items() if v == 1]
        if gens:
            out.write(f"Monitoring: {gens[0]}\n")
    out.write("\n")

    reported = {dict(k)["fault_id"]: v for k, v in values.get("cisco_amp_fault_active",
                                                              {}).items()}
    for fault in FAULTS:
        fid = str(fault.id)
        active = reported.get(fid)
        found = [(c, details[(fault.id, c.name)]) for c in fault.causes
                 if (fault.id, c.name) in details]
        if active == 1:
            sev = SEVERITY_WORDS.get(int(value("cisco_amp_fault_severity", fault_id=fid) or 0))
            state = f"RAISED ({sev})"
        elif active is None:
            state = "unknown (ampcli did not answer)"
        else:
            state = "clear" + (", but a cause is present" if found else "")
        out.write(f"[{fault.id:>2}] {fault.title}: {state}\n")
        if fault.id in messages:
            out.write(f"     connector says: {messages[fault.id]}\n")
        if active == 1 or found:
            problems += 1
            for cause, detail in found:
                out.write(f"     cause: {detail}\n       fix: {cause.remedy}\n")
            if active == 1:
                if not found:
                    out.write("     no cause found by the exporter's own checks\n")
                for action in fault.actions:
                    out.write(f"     - {action}\n")
    unknown = sorted((fid for fid, v in reported.items()
                      if v == 1 and int(fid) not in FAULTS_BY_ID), key=int)
    for fid in unknown:
        problems += 1
        out.write(f"[{fid:>2}] (not in the catalog): RAISED\n")
        if int(fid) in messages:
            out.write(f"     connector says: {messages[int(fid)]}\n")
    if failed:
        out.write("\nChecks that could not run (see the log above): " + ", ".join(failed) + "\n")
    out.write("\n" + ("Healthy.\n" if problems == 0 else f"{problems} problem(s) found.\n"))
    return 1 if problems else 0
