"""The inhibit rules of alerts/alertmanager.yml in the real Alertmanager (Debian package
prometheus-alertmanager) on loopback: alerts posted to /api/v2/alerts are muted exactly
where a rule says so, and by the alert it names as the source.

Each scenario puts its alerts on hosts of its own, so one scenario's sources cannot mute
another's targets. No notification leaves: the example routes wait 30 s before the first
one (group_wait), longer than the test runs, and the receivers are on example.invalid.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from conftest import REPO, LoopbackDaemon, free_port

from amp_exporter.catalog import FAULTS
from amp_exporter.monitoring import alertmanager, alerts
from amp_exporter.monitoring.config import DEFAULT

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
needs_alertmanager = pytest.mark.skipif(
    BINARY is None, reason="Alertmanager binary missing (Debian: apt install "
    "prometheus-alertmanager)")

# Inhibit rules in the order of alerts/alertmanager.yml.
(EXPORTER_DOWN, CRITICAL_OVER_WARNING, FAULT_OVER_EARLY_WARNING, FAULT_OVER_DEGRADED,
 SILENT_CONNECTOR_OVER_COLLECTOR) = range(5)


def _severities() -> dict[str, str]:
    """Each alert's severity; for those with a tier per severity, the catalog's default."""
    defaults = {alerts.fault_alert_name(f): f.alert_severity for f in FAULTS}
    return {r["alert"]: (defaults.get(r["alert"], "warning") if alerts.is_tiered(r["alert"])
                         else r["labels"]["severity"])
            for g in alerts.alert_groups() for r in g["rules"]}


SEVERITY = _severities()


@dataclass
class Alert:
    key: str
    labels: dict[str, str]
    # Keys of the alerts allowed to mute this one (Alertmanager names one of them); empty:
    # must stay active.
    muted_by: frozenset = frozenset()
    rule: int | None = None  # the inhibit rule expected to mute it


def ours(key: str, name: str, host: str, fault_id: str | int | None = None,
         severity: str | None = None, muted_by: tuple[str, ...] = (),
         rule: int | None = None, **extra: str) -> Alert:
    """One of the generated alerts (severity from the rules unless given) on HOST."""
    labels = {"alertname": name, "severity": severity or SEVERITY[name], "job": DEFAULT.job,
              "instance": f"{host}:9710", **extra}
    if fault_id is not None:
        labels["fault_id"] = str(fault_id)
    assert name in SEVERITY or name.startswith("Node"), name
    return Alert(key, labels, frozenset(muted_by), rule)


ALERTS = [
    # Exporter down on host A: A's other CiscoAmp alerts are muted, not B's, not A's alerts
    # of other origin, and not the job-wide "absent" alert (it has no instance).
    ours("a-down", "CiscoAmpExporterDown", "a"),
    ours("a-fault16", "CiscoAmpIncompatibleKernel", "a", 16, muted_by=("a-down",),
         rule=EXPORTER_DOWN),
    ours("a-disconnected", "CiscoAmpConnectorDisconnected", "a", muted_by=("a-down",),
         rule=EXPORTER_DOWN),
    ours("a-collector", "CiscoAmpCollectorFailing", "a", collector="connector",
         muted_by=("a-down",), rule=EXPORTER_DOWN),
    ours("a-node", "NodeFilesystemAlmostFull", "a", severity="warning"),
    ours("b-fault16", "CiscoAmpIncompatibleKernel", "b", 16),
    ours("b-disconnected", "CiscoAmpConnectorDisconnected", "b"),
    Alert("absent", {"alertname": "CiscoAmpExporterAbsent", "job": DEFAULT.job,
                     "severity": SEVERITY["CiscoAmpExporterAbsent"]}),
    # A critical mutes the warning of the same fault on the same host (a warning tier of
    # fault 7 here), not another fault's warning, not the same fault's warning elsewhere.
    ours("c-fault7", "CiscoAmpScanServiceFailedToStart", "c", 7),
    ours("c-fault7-warning", "CiscoAmpScanServiceFailedToStart", "c", 7, severity="warning",
         muted_by=("c-fault7",), rule=CRITICAL_OVER_WARNING),
    # ... and its info tier (a fault the connector calls Critical fires all three tiers):
    # only the page reaches anyone.
    ours("c-fault7-info", "CiscoAmpScanServiceFailedToStart", "c", 7, severity="info",
         muted_by=("c-fault7", "c-fault7-warning"), rule=FAULT_OVER_EARLY_WARNING),
    ours("c-fault6", "CiscoAmpScanServiceRestartingFrequently", "c", 6),
    ours("d-fault7-warning", "CiscoAmpScanServiceFailedToStart", "d", 7, severity="warning"),
    # A fault's alert mutes its early warning (info) on the same host, not another fault's
    # early warning there, not the same early warning on another host.
    ours("e-fault6", "CiscoAmpScanServiceRestartingFrequently", "e", 6),
    ours("e-restarting", "CiscoAmpScanServiceRestarting", "e", 6, muted_by=("e-fault6",),
         rule=FAULT_OVER_EARLY_WARNING),
    ours("e-pressure", "CiscoAmpEventPressureHigh", "e", 18),
    ours("f-restarting", "CiscoAmpScanServiceRestarting", "f", 6),
    # A fault's alert (critical or warning, any fault) mutes "connector degraded" on its
    # host; an early warning (info) does not; degraded alone stays.
    ours("g-fault18", "CiscoAmpConnectorEventMonitoringOverloaded", "g", 18),
    ours("g-fault23", "CiscoAmpUnknownFaultReported", "g", 23),
    ours("g-pressure", "CiscoAmpEventPressureHigh", "g", 18, muted_by=("g-fault18",),
         rule=FAULT_OVER_EARLY_WARNING),
    ours("g-degraded", "CiscoAmpConnectorDegraded", "g", muted_by=("g-fault18", "g-fault23"),
         rule=FAULT_OVER_DEGRADED),
    ours("h-pressure", "CiscoAmpEventPressureHigh", "h", 18),
    ours("h-degraded", "CiscoAmpConnectorDegraded", "h"),
    ours("i-degraded", "CiscoAmpConnectorDegraded", "i"),
    # A dead or silent daemon mutes the connector collector's failure on its host (the
    # same finding), not another collector's failure there, not another host's.
    ours("j-dead", "CiscoAmpConnectorDaemonNotRunning", "j", state="daemon_not_running"),
    ours("j-collector", "CiscoAmpCollectorFailing", "j", collector="connector",
         muted_by=("j-dead",), rule=SILENT_CONNECTOR_OVER_COLLECTOR),
    ours("j-kernel", "CiscoAmpCollectorFailing", "j", collector="kernel"),
    ours("k-silent", "CiscoAmpConnectorNotAnswering", "k", state="not_answering"),
    ours("k-collector", "CiscoAmpCollectorFailing", "k", collector="connector",
         muted_by=("k-silent",), rule=SILENT_CONNECTOR_OVER_COLLECTOR),
    ours("l-collector", "CiscoAmpCollectorFailing", "l", collector="connector"),
]


class Alertmanager(LoopbackDaemon):
    def __init__(self, tmp) -> None:
        port = free_port()
        super().__init__(
            [BINARY, f"--config.file={REPO / alertmanager.ALERTMANAGER_FILE}",
             f"--storage.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--cluster.listen-address=", "--log.level=warn"],
            tmp / "alertmanager.log", port)

    def request(self, path: str, body: object = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            text = r.read()
            json_body = r.headers.get_content_type() == "application/json" and text.strip()
            return r.status, json.loads(text) if json_body else text.decode()

    def wait_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "alertmanager exited: " + self.read_log()
            try:
                if self.request("/-/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("alertmanager not ready: " + self.read_log())


@pytest.fixture
def am(tmp_path):
    server = Alertmanager(tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_the_scenarios_cover_every_inhibit_rule():
    rules = yaml.safe_load((REPO / alertmanager.ALERTMANAGER_FILE).read_text())["inhibit_rules"]
    assert rules == alertmanager.alertmanager_config()["inhibit_rules"]
    assert {a.rule for a in ALERTS if a.muted_by} == set(range(len(rules)))
    assert (len(ALERTS), sum(1 for a in ALERTS if a.muted_by)) == (30, 10)  # none dropped
    keys = [a.key for a in ALERTS]
    assert len(keys) == len(set(keys))
    assert all(k in keys for a in ALERTS for k in a.muted_by)


def observed(am: Alertmanager) -> dict[str, tuple[str, frozenset]]:
    """{alert key: (state, keys of the alerts Alertmanager says mute it)}"""
    status, got = am.request("/api/v2/alerts")
    assert status == 200
    by_labels = {json.dumps(a.labels, sort_keys=True): a for a in ALERTS}
    fingerprints = {}
    states = {}
    for alert in got:
        ours = by_labels[json.dumps(alert["labels"], sort_keys=True)]
        fingerprints[alert["fingerprint"]] = ours.key
        states[ours.key] = alert["status"]
    return {key: (s["state"], frozenset(fingerprints.get(fp, fp) for fp in s["inhibitedBy"]))
            for key, s in states.items()}


@needs_alertmanager
def test_inhibit_rules_mute_exactly_what_they_should(am):
    started = time.monotonic()
    now = datetime.now(timezone.utc)
    body = [{"labels": a.labels, "annotations": {"summary": a.key},
             "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat(),
             "generatorURL": "http://prometheus.example.invalid/graph"} for a in ALERTS]
    assert am.request("/api/v2/alerts", body)[0] == 200

    def wrong(seen: dict) -> list[str]:
        out = []
        for a in ALERTS:
            state, by = seen.get(a.key, ("missing", frozenset()))
            if a.muted_by:
                if state != "suppressed" or not by or not by <= a.muted_by:
                    out.append(f"{a.key}: {state} by {sorted(by)}, expected muted by one of "
                               f"{sorted(a.muted_by)}")
            elif state != "active" or by:
                out.append(f"{a.key}: {state} by {sorted(by)}, expected active")
        return out

    # The inhibitor learns of the sources asynchronously: wait for the answer to settle.
    deadline = time.monotonic() + 8
    while True:
        problems = wrong(observed(am))
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not problems, "\n".join(problems)
    time.sleep(0.5)  # and it stays so
    assert wrong(observed(am)) == []
    assert time.monotonic() - started < 15
