"""Prometheus alert and recording rules, generated from the fault catalog and config.py.

One alert per catalog fault (name derived from its title, severity and `for:` from the
catalog), then the alerts that are not a connector fault (exporter down or absent,
collector failing, connector not installed / disconnected / degraded, early warnings
before faults 6 and 18, a fault ID the catalog does not know). `add_runbook_links` gives
every alert its `runbook_url` in one pass at the end, as the mixins'
add-runbook-links does.

Descriptions name the root causes the exporter found with the template function `query`
over `cisco_amp_fault_cause` for the alert's own job, instance and fault: the causes stay
out of the alert's labels, so an alert does not resolve and fire again as a new one when
the exporter finds one more cause, and Alertmanager groups on stable labels. The alert
expressions do not aggregate, so target labels (team, env, ...) reach Alertmanager.
"""

from __future__ import annotations

import re
from typing import Any

from amp_exporter.catalog import FAULTS, Fault
from amp_exporter.monitoring.config import ALERT_PREFIX, DEFAULT, Config

Rule = dict[str, Any]

RULES_FILE = "alerts/amp-exporter.rules.yml"
RECORDING_FILE = "alerts/amp-exporter.recording.yml"

SEVERITY_WORDS = ("none", "minor", "major", "critical")  # cisco_amp_fault_severity 0..3


def alert_name(title: str) -> str:
    """'Scan service restarting frequently' -> 'CiscoAmpScanServiceRestartingFrequently'.

    Words are split on anything not a letter or digit; each word's first letter is upper
    case and the rest is kept ('SELinux' stays 'SELinux', 'Real-time' becomes 'RealTime').
    """
    words = re.findall(r"[A-Za-z0-9]+", title)
    return ALERT_PREFIX + "".join(w[0].upper() + w[1:] for w in words)


def fault_alert_name(fault: Fault) -> str:
    return alert_name(fault.title)


def runbook_anchor(name: str) -> str:
    """'CiscoAmpScanServiceRestartingFrequently' -> 'scan-service-restarting-frequently'."""
    rest = name[len(ALERT_PREFIX):] if name.startswith(ALERT_PREFIX) else name
    return "-".join(w.lower() for w in re.findall(r"[A-Z]{2,}[a-z]+|[A-Z][a-z]*|[0-9]+", rest))


def runbook_url(name: str, config: Config = DEFAULT) -> str:
    return f"{config.runbook_url_base}{runbook_anchor(name)}.md"


def _sel(config: Config, *extra: str) -> str:
    return "{" + ",".join((config.selector, *extra)) + "}"


def _query(promql: str, *args: str) -> str:
    """Template: `with` the result of PROMQL (printf-formatted with ARGS) as `.`."""
    return "{{ with printf `" + promql + "` " + " ".join(args) + " | query"


def _list(label: str) -> str:
    """Template: the LABEL values of the query result in `.`, joined with ', '."""
    return ("{{ range $i, $s := . }}{{ if $i }}, {{ end }}{{ $s.Labels." + label +
            " }}{{ end }}")


def _sentence(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p)


TARGET = "$labels.job $labels.instance"  # printf arguments for job=%q,instance=%q


# -- one alert per catalog fault -----------------------------------------------------------

def fault_description(fault: Fault) -> str:
    """The description template of a fault's alert (Go template, as Prometheus renders it)."""
    if fault.causes:
        found = (_query("cisco_amp_fault_cause{job=%q,instance=%q,fault_id=\"" +
                        str(fault.id) + "\"} == 1", TARGET) + ' | sortByLabel "cause" }}'
                 "Causes the exporter found: " + _list("cause") + ".{{ else }}"
                 "The exporter found none of the causes it checks (" +
                 ", ".join(fault.cause_names) + ").{{ end }}")
    else:
        found = "The exporter has no check of its own for this fault's causes."
    return (_sentence(f"The connector on {{{{ $labels.instance }}}} reports fault {fault.id} "
                      f"({fault.title}).", fault.meaning, fault.impact) + "\n" + found)


def fault_summary(fault: Fault) -> str:
    return f"Fault {fault.id} on {{{{ $labels.instance }}}}: {fault.title}."


def fault_alert(fault: Fault, config: Config) -> Rule:
    return {
        "alert": fault_alert_name(fault),
        "expr": f'cisco_amp_fault_active{_sel(config, f"fault_id={chr(34)}{fault.id}{chr(34)}")}'
                " == 1",
        "for": fault.alert_for,
        "labels": {"severity": fault.alert_severity},
        "annotations": {"summary": fault_summary(fault),
                        "description": fault_description(fault)},
    }


def known_fault_regex() -> str:
    return "|".join(str(f.id) for f in FAULTS)


# -- alerts that are not one connector fault -----------------------------------------------

def other_alerts(config: Config) -> list[Rule]:
    sel = _sel(config)
    known = known_fault_regex()
    return [
        {
            "alert": f"{ALERT_PREFIX}UnknownFaultReported",
            "expr": f'cisco_amp_fault_active{_sel(config, f"fault_id!~{chr(34)}{known}{chr(34)}")}'
                    " == 1",
            "for": config.unknown_fault_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Unknown fault {{ $labels.fault_id }} on {{ $labels.instance }}.",
                "description": "The connector on {{ $labels.instance }} reports fault "
                "{{ $labels.fault_id }} (severity " +
                _query("cisco_amp_fault_severity{job=%q,instance=%q,fault_id=%q}", TARGET,
                       "$labels.fault_id") + " }}{{ . | first | value }}{{ else }}?{{ end }}"
                " of 3), which amp-exporter's fault catalog does not know: no cause "
                "checks and no runbook of its own.",
            },
        },
        {
            "alert": f"{ALERT_PREFIX}ExporterDown",
            "expr": f"up{sel} == 0",
            "for": config.exporter_down_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "amp-exporter on {{ $labels.instance }} cannot be scraped.",
                "description": "Prometheus has failed to scrape amp-exporter on "
                "{{ $labels.instance }} for " + config.exporter_down_for + ": the health of "
                "its Cisco Secure Endpoint connector is unknown and its other alerts are "
                "silenced.",
            },
        },
        {
            "alert": f"{ALERT_PREFIX}ExporterAbsent",
            "expr": f"absent(up{sel})",
            "for": config.target_absent_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"No amp-exporter target of job {config.job} is scraped.",
                "description": f"Prometheus has had no target of job {config.job} for "
                f"{config.target_absent_for}: service discovery or the scrape configuration "
                "lost every amp-exporter, and no Cisco Secure Endpoint alert can fire.",
            },
        },
        {
            "alert": f"{ALERT_PREFIX}CollectorFailing",
            "expr": f"amp_exporter_scrape_collector_success{sel} == 0",
            "for": config.collector_failing_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "amp-exporter collector {{ $labels.collector }} fails on "
                "{{ $labels.instance }}.",
                "description": "The {{ $labels.collector }} collector of amp-exporter on "
                "{{ $labels.instance }} has failed for " + config.collector_failing_for +
                ": its metrics are missing and the checks it owns cannot report.\n" +
                _query("increase(amp_exporter_collector_errors_total{job=%q,instance=%q,"
                       "collector=%q}[" + config.collector_failing_for + "]) > 0", TARGET,
                       "$labels.collector") + ' | sortByLabel "reason" }}'
                "Reasons: " + _list("reason") + ".{{ else }}No error counted recently."
                "{{ end }}",
            },
        },
        {
            "alert": f"{ALERT_PREFIX}ConnectorNotInstalled",
            "expr": f"cisco_amp_connector_installed{sel} == 0",
            "for": config.not_installed_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "No Cisco Secure Endpoint connector on {{ $labels.instance }}.",
                "description": "amp-exporter runs on {{ $labels.instance }} but finds no "
                "connector installed (no opt/cisco/amp/bin/ampdaemon): the host is "
                "unprotected, or amp-exporter is deployed where it should not be.",
            },
        },
        {
            "alert": f"{ALERT_PREFIX}ConnectorDisconnected",
            "expr": f"cisco_amp_connector_connected{sel} == 0",
            "for": config.disconnected_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Cisco Secure Endpoint on {{ $labels.instance }} is disconnected.",
                "description": "The connector on {{ $labels.instance }} has not been "
                "connected to the Cisco cloud for " + config.disconnected_for + ": it gets "
                "no policy or definition updates and its events do not reach the console.",
            },
        },
        {
            "alert": f"{ALERT_PREFIX}ConnectorDegraded",
            "expr": f"cisco_amp_connector_degraded{sel} == 1",
            "for": config.degraded_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Cisco Secure Endpoint on {{ $labels.instance }} runs degraded.",
                "description": "The connector on {{ $labels.instance }} has reported a "
                "degraded mode for " + config.degraded_for + ".\n" +
                _query("cisco_amp_fault_active{job=%q,instance=%q} == 1", TARGET) +
                ' | sortByLabel "fault_id" }}Faults it reports: ' + _list("fault_id") +
                ".{{ else }}It reports no fault.{{ end }}",
            },
        },
        {
            "alert": f"{ALERT_PREFIX}ScanServiceRestarting",
            "expr": f"increase(cisco_amp_scan_service_restarts_total{sel}"
                    f"[{config.scan_restart_window}]) >= {config.scan_restarts}",
            "labels": {"severity": "info", "fault_id": "6"},
            "annotations": {
                "summary": "The scan service on {{ $labels.instance }} keeps restarting.",
                "description": "amp-exporter saw the scan service (ampscansvc) on "
                "{{ $labels.instance }} restart {{ $value | humanize }} times in the last "
                f"{config.scan_restart_window}. The connector raises fault 6 when this "
                "goes on.",
            },
        },
        {
            "alert": f"{ALERT_PREFIX}EventPressureHigh",
            "expr": f"cisco_amp_event_pressure_ratio{sel} > {config.event_pressure_ratio:g}",
            "for": config.event_pressure_for,
            "labels": {"severity": "info", "fault_id": "18"},
            "annotations": {
                "summary": "System events on {{ $labels.instance }} near the connector's "
                "capacity.",
                "description": "Events on {{ $labels.instance }} have arrived at "
                "{{ $value | humanizePercentage }} of the configured capacity for "
                f"{config.event_pressure_for}. The connector raises fault 18 and watches "
                "fewer events when it cannot keep up.",
            },
        },
    ]


def add_runbook_links(groups: list[dict], config: Config = DEFAULT) -> list[dict]:
    """Give every alert a runbook_url (docs/runbooks/<anchor>.md), in one pass."""
    for group in groups:
        for rule in group["rules"]:
            if "alert" in rule:
                rule.setdefault("annotations", {})["runbook_url"] = runbook_url(
                    rule["alert"], config)
    return groups


def alert_groups(config: Config = DEFAULT) -> list[dict]:
    groups = [
        {"name": "cisco-amp-faults", "rules": [fault_alert(f, config) for f in FAULTS]},
        {"name": "cisco-amp-connector", "rules": other_alerts(config)},
    ]
    names = [r["alert"] for g in groups for r in g["rules"]]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    return add_runbook_links(groups, config)


def alert_names(config: Config = DEFAULT) -> list[str]:
    return [r["alert"] for g in alert_groups(config) for r in g["rules"]]


# -- recording rules -----------------------------------------------------------------------

def recording_groups(config: Config = DEFAULT) -> list[dict]:
    """Rules named level:metric:operation. `job:` rules have one series per job (and per
    the dimension their name says); `instance:` rules one per scraped host. Later rules of
    the group use earlier ones (a group evaluates its rules in order)."""
    sel = _sel(config)
    rules: list[Rule] = [
        {"record": "instance:cisco_amp_fault_active:sum",
         "expr": f"sum by (job, instance) (cisco_amp_fault_active{sel})"},
        {"record": "instance:cisco_amp_fault_severity:max",
         "expr": f"max by (job, instance) (cisco_amp_fault_severity{sel})"},
        {"record": "job:cisco_amp_fault_active:sum",
         "expr": f"sum by (job, fault_id) (cisco_amp_fault_active{sel})"},
        {"record": "job:cisco_amp_hosts_faulty:sum",
         "expr": "sum by (job) (instance:cisco_amp_fault_active:sum > bool 0)"},
    ]
    for level, word in enumerate(SEVERITY_WORDS):
        rules.append({"record": "job:cisco_amp_hosts_by_severity:sum",
                      "expr": f"sum by (job) (instance:cisco_amp_fault_severity:max == bool "
                              f"{level})",
                      "labels": {"severity": word}})
    rules += [
        {"record": "job:cisco_amp_connector_version:count",
         "expr": f"count by (job, version) (cisco_amp_connector_info{sel})"},
        {"record": "job:cisco_amp_connector_not_installed:sum",
         "expr": f"sum by (job) (1 - cisco_amp_connector_installed{sel})"},
        {"record": "job:cisco_amp_connector_disconnected:sum",
         "expr": f"sum by (job) (1 - cisco_amp_connector_connected{sel})"},
        {"record": "job:cisco_amp_connector_degraded:sum",
         "expr": f"sum by (job) (cisco_amp_connector_degraded{sel})"},
        {"record": "job:amp_exporter_collector_failing:sum",
         "expr": f"sum by (job, collector) (1 - amp_exporter_scrape_collector_success{sel})"},
        {"record": "job:up:sum",
         "expr": f"sum by (job) (up{sel})"},
        {"record": "instance:cisco_amp_host_events:rate5m",
         "expr": f"sum by (job, instance) (rate(cisco_amp_host_events_total{sel}[5m]))"},
    ]
    return [{"name": "cisco-amp-recording", "rules": rules}]


def recording_names(config: Config = DEFAULT) -> list[str]:
    return list(dict.fromkeys(r["record"] for g in recording_groups(config)
                              for r in g["rules"]))
