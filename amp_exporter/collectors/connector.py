"""What the connector says about itself: `ampcli status`, its version and its policy."""

from __future__ import annotations

from amp_exporter.catalog import CONNECTOR_STATES, FAULTS
from amp_exporter.host import connector_files
from amp_exporter.host.ampcli import AmpcliResult
from amp_exporter.host.processes import DAEMON
from amp_exporter.registry import Collector, CollectorError, counter, gauge, register

STATUS_FIELDS_AS_LABELS = {  # ampcli key -> info label; values are short fixed words
    "mode": "mode",
    "command-line": "command_line",
    "orbital": "orbital",
    "behavioural protection": "behavioural_protection",
}


NAME = "connector"
INSTALLED = gauge(NAME, "cisco_amp_connector_installed",
                  "1 when the connector is installed (opt/cisco/amp/bin/ampdaemon exists under "
                  "the root).")
ACTIVE = gauge(NAME, "cisco_amp_fault_active",
               "1 while the connector reports the fault (ampcli status). Every catalog fault is "
               "always present; other reported IDs appear too.", ("fault_id",))
SEVERITY = gauge(NAME, "cisco_amp_fault_severity",
                 "Severity the connector reports: 0 none, 1 minor, 2 major, 3 critical.",
                 ("fault_id",))
CONNECTED = gauge(NAME, "cisco_amp_connector_connected", "1 when ampcli status says Connected.")
DEGRADED = gauge(NAME, "cisco_amp_connector_degraded",
                 "1 when the connector reports a degraded mode.")
FAULT_COUNTS = gauge(NAME, "cisco_amp_faults",
                     "Faults the connector reports, by severity (its Faults: summary).",
                     ("severity",))
LAST_SCAN = gauge(NAME, "cisco_amp_last_scan_timestamp_seconds",
                  "When the connector last scanned (Last Scan:, read as host local time).")
POLICY_SERIAL = gauge(NAME, "cisco_amp_policy_serial",
                      "Serial number of the applied policy (Policy: Name (#N)).")
INFO = gauge(NAME, "cisco_amp_connector_info",
             "What the connector reports about itself (always 1).",
             ("version", "policy", *STATUS_FIELDS_AS_LABELS.values()))
POLICY_FEATURE = gauge(NAME, "cisco_amp_policy_feature_enabled",
                       "1 when the applied policy turns the feature on (absent when it cannot be "
                       "read; faults 8, 9 and 16 then count the feature as on).", ("feature",))
STATE = gauge(NAME, "cisco_amp_connector_state",
              "The connector's state, 1 for the current one (" +
              ", ".join(s.name for s in CONNECTOR_STATES) + "; see docs/metrics.md).",
              ("state",))
AMPCLI_RUNS = counter(NAME, "amp_exporter_ampcli_runs", "Times the exporter started ampcli.")
AMPCLI_DURATION = gauge(NAME, "amp_exporter_ampcli_duration_seconds",
                        "How long the last ampcli status run took.")
AMPCLI_SUCCESS = gauge(NAME, "amp_exporter_ampcli_success",
                       "1 when the last ampcli status run answered and parsed.")
AMPCLI_EXIT_CODE = gauge(NAME, "amp_exporter_ampcli_exit_code",
                         "Exit code of the last ampcli status run (absent when it was killed "
                         "or never ran). A status printed with a non-zero code is still used.")


@register
class ConnectorCollector(Collector):
    name = NAME
    help = "ampcli status (connection, mode, faults and severities), version, policy features."

    def collect(self):
        installed = connector_files.installed(self.paths)
        families = [INSTALLED.single(installed)]
        active, severity = ACTIVE.family(), SEVERITY.family()
        if not installed:
            for f in FAULTS:
                active.add_metric([str(f.id)], 0.0)
                severity.add_metric([str(f.id)], 0.0)
            return [*families, state_family("not_installed"), active, severity]

        families.extend(self.policy_features())
        result = self.shared.ampcli_status()
        families.extend(self.ampcli_health())
        if not result.ok:
            state = self.silent_state(result)
            families.append(state_family(state))
            if state == "daemon_not_running":
                # Nothing wrong with the exporter: a stopped daemon cannot answer, and that
                # is the finding. Its faults are unknown, so they are left out, never 0.
                return families
            raise CollectorError(result.error or "internal", f"ampcli status: {result.message}",
                                 partial=families)
        families.append(state_family("answering"))
        status = result.status
        reported = dict(status.faults)
        for f in FAULTS:
            reported.setdefault(f.id, None)
        for fid in sorted(reported):
            fault = reported[fid]
            active.add_metric([str(fid)], 0.0 if fault is None else 1.0)
            if fault is None:
                severity.add_metric([str(fid)], 0.0)
            elif fault.level is not None:
                severity.add_metric([str(fid)], float(fault.level))
        families += [active, severity]

        connected = status.connected
        if connected is not None:
            families.append(CONNECTED.single(connected))
        families.append(DEGRADED.single(status.degraded))
        counts = FAULT_COUNTS.family()
        for word in ("minor", "major", "critical"):
            counts.add_metric([word], float(status.fault_counts.get(word, 0)))
        families.append(counts)
        last_scan = status.last_scan_timestamp
        if last_scan is not None:
            families.append(LAST_SCAN.single(last_scan))
        policy_name, serial = status.policy
        if serial is not None:
            families.append(POLICY_SERIAL.single(float(serial)))
        labels = {"version": connector_files.connector_version(self.paths) or "",
                  "policy": policy_name or ""}
        for key, label in STATUS_FIELDS_AS_LABELS.items():
            labels[label] = (status.get(key) or "")[:64]
        families.append(INFO.single(1, *(labels[k] for k in INFO.labels)))
        return families

    def silent_state(self, result: AmpcliResult) -> str:
        """Why an installed connector gave no status: ampcli's answer is trusted over the
        process table (a process table that cannot be read never means "daemon stopped")."""
        if result.error == "permission":
            return "unknown"
        try:
            running = self.shared.processes.snapshot().running(DAEMON)
        except (OSError, CollectorError):
            running = True
        return "not_answering" if running else "daemon_not_running"

    def policy_features(self):
        family = POLICY_FEATURE.family()
        for feature, on in connector_files.policy_features(self.paths).items():
            if on is not None:
                family.add_metric([feature], float(on))
        return [family]

    def ampcli_health(self):
        runner = self.shared.ampcli
        last = runner.last
        families = [AMPCLI_RUNS.single(runner.runs)]
        if last is not None:
            families.append(AMPCLI_DURATION.single(last.duration_seconds))
            families.append(AMPCLI_SUCCESS.single(last.ok))
            if last.exit_code is not None:
                families.append(AMPCLI_EXIT_CODE.single(last.exit_code))
        return families


def state_family(current: str):
    family = STATE.family()
    for s in CONNECTOR_STATES:
        family.add_metric([s.name], 1.0 if s.name == current else 0.0)
    return family
