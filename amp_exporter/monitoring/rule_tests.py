"""promtool unit tests (alerts/tests/*.yaml) for the generated rules.

Every alert is made to fire and, on a second host or before its `for:` is over, to stay
quiet. Expected annotations are written out here as the text a person reads (not copied
from the templates), so a template that renders differently fails `promtool test rules`.
"""

from __future__ import annotations

import re
from typing import Optional

from amp_exporter.catalog import FAULTS
from amp_exporter.monitoring.alerts import (
    ALERT_PREFIX,
    ALERT_SEVERITY_BY_LEVEL,
    LEVEL_BY_ALERT_SEVERITY,
    ONE_SHOT_BLIND,
    TEXTFILE_DIR,
    _seconds,
    fault_alert_name,
    rule_files,
    runbook_url,
)
from amp_exporter.monitoring.config import DEFAULT, TEXTFILE, Config

TEST_DIR = "alerts/tests"


def minutes(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([mh])", duration)
    assert match, f"unsupported duration {duration!r}"
    return int(match.group(1)) * (60 if match.group(2) == "h" else 1)


def tiers(level: int) -> list[str]:
    """The severity tiers that fire for a fault at LEVEL: that one and every lower one."""
    return [ALERT_SEVERITY_BY_LEVEL[n] for n in range(1, level + 1)]


def _series(metric: str, values: str, **labels: str) -> dict:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def _alert(name: str, config: Config, labels: dict, summary: str, description: str) -> dict:
    return {"exp_labels": labels,
            "exp_annotations": {"summary": summary, "description": description,
                                "runbook_url": runbook_url(name, config)}}


def _file(rule_file: str, groups: list[dict]) -> dict:
    """A promtool test file; it lives in tests/ beside RULE_FILE."""
    return {"rule_files": [f"../{rule_file.rsplit('/', 1)[1]}"], "evaluation_interval": "1m",
            "tests": groups}


# -- one test group per fault --------------------------------------------------------------

def fault_tests(config: Config = DEFAULT) -> dict:
    groups = []
    job = config.job
    for f in FAULTS:
        name = fault_alert_name(f)
        fid = str(f.id)
        wait = minutes(f.alert_for)
        n = wait + 10
        series = [
            # h1: the fault from minute 1, with up to two causes found (listed in reverse).
            _series("cisco_amp_fault_active", f"0 1x{n}", job=job, instance="h1", fault_id=fid),
            # h2: the fault never raised; h3: raised, no cause found.
            _series("cisco_amp_fault_active", f"0x{n + 1}", job=job, instance="h2",
                    fault_id=fid),
            _series("cisco_amp_fault_active", f"0 1x{n}", job=job, instance="h3", fault_id=fid),
            # another job's hosts never alert.
            _series("cisco_amp_fault_active", f"1x{n + 1}", job="other", instance="h1",
                    fault_id=fid),
        ]
        # The connector's severity decides the alert's: h1 Critical, h4 Minor, h5 Major; h3
        # says none (a Fault IDs line only), so the catalog's default applies. h4 and h5
        # have no cause series: their checks did not run.
        for inst, level in (("h1", 3), ("h4", 1), ("h5", 2)):
            if inst != "h1":
                series.append(_series("cisco_amp_fault_active", f"0 1x{n}", job=job,
                                      instance=inst, fault_id=fid))
            series.append(_series("cisco_amp_fault_severity", f"0 {level}x{n}", job=job,
                                  instance=inst, fault_id=fid))
        series.append(_series("cisco_amp_fault_severity", f"0x{n + 1}", job=job, instance="h2",
                              fault_id=fid))
        found = sorted(c.name for c in f.causes[:2])
        for i, cause in enumerate(f.causes):
            series.append(_series("cisco_amp_fault_cause", f"{1 if i < 2 else 0}x{n + 1}",
                                  job=job, instance="h1", fault_id=fid, cause=cause.name))
            series.append(_series("cisco_amp_fault_cause", f"0x{n + 1}", job=job,
                                  instance="h3", fault_id=fid, cause=cause.name))
        series.reverse()

        def description(instance: str, causes: Optional[list[str]], f=f) -> str:
            """CAUSES found (None: no cause series at all, the checks did not run)."""
            text = (f"The connector on {instance} reports fault {f.id} ({f.title}). "
                    f"{f.meaning} {f.impact}\n")
            if not f.causes:
                return text + "The exporter has no check of its own for this fault's causes."
            if causes is None:
                return text + "The exporter could not check this fault's causes on this host."
            if causes:
                return text + "Causes the exporter found: " + ", ".join(causes) + "."
            return (text + "The exporter found none of the causes it checks (" +
                    ", ".join(c.name for c in f.causes) + ").")

        firing = [_alert(name, config, {"job": job, "instance": inst, "fault_id": fid,
                                        "severity": severity},
                         f"Fault {f.id} on {inst}: {f.title}.", description(inst, causes))
                  for inst, causes, level in (
                      ("h1", found, 3), ("h3", [], LEVEL_BY_ALERT_SEVERITY[f.alert_severity]),
                      ("h4", None, 1), ("h5", None, 2))
                  for severity in tiers(level)]
        groups.append({
            "name": f"fault {f.id}: {name}",
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                # raised at minute 1: still pending when `for` is not yet over.
                {"eval_time": f"{wait}m", "alertname": name, "exp_alerts": []},
                {"eval_time": f"{wait + 2}m", "alertname": name, "exp_alerts": firing},
            ],
        })
    return _file(rule_files(config)[0], groups)


# -- the other alerts ----------------------------------------------------------------------

def connector_tests(config: Config = DEFAULT) -> dict:
    job = config.job
    J = {"job": job}

    def labels(instance: str, severity: str = "warning", **extra: str) -> dict:
        return {**J, "instance": instance, "severity": severity, **extra}

    def alert(name, lab, summary, description):
        return _alert(name, config, lab, summary, description)

    groups = [
        {
            "name": "unknown fault, connector states",
            "interval": "1m",
            "input_series": [
                _series("cisco_amp_fault_active", "1x90", **J, instance="h1", fault_id="23"),
                _series("cisco_amp_fault_severity", "2x90", **J, instance="h1", fault_id="23"),
                # an unknown fault the connector calls Critical pages; one without a
                # severity warns (the default).
                _series("cisco_amp_fault_active", "1x90", **J, instance="h5", fault_id="31"),
                _series("cisco_amp_fault_severity", "3x90", **J, instance="h5", fault_id="31"),
                _series("cisco_amp_fault_active", "1x90", **J, instance="h4", fault_id="32"),
                _series("cisco_amp_fault_active", "1x90", **J, instance="h1", fault_id="7"),
                _series("cisco_amp_fault_active", "0x90", **J, instance="h2", fault_id="24"),
                _series("cisco_amp_fault_active", "1x90", **J, instance="h2", fault_id="6"),
                _series("cisco_amp_connector_installed", "1x90", **J, instance="h1"),
                _series("cisco_amp_connector_installed", "0x90", **J, instance="h2"),
                _series("cisco_amp_connector_connected", "0x90", **J, instance="h1"),
                _series("cisco_amp_connector_connected", "1x90", **J, instance="h3"),
                _series("cisco_amp_connector_degraded", "1x90", **J, instance="h1"),
                _series("cisco_amp_connector_degraded", "1x90", **J, instance="h3"),
                _series("cisco_amp_connector_degraded", "0x90", **J, instance="h4"),
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "CiscoAmpUnknownFaultReported",
                 "exp_alerts": []},
                {"eval_time": "20m", "alertname": "CiscoAmpUnknownFaultReported",
                 "exp_alerts": [alert(
                     "CiscoAmpUnknownFaultReported", labels(inst, sev, fault_id=fid),
                     f"Unknown fault {fid} on {inst}.",
                     f"The connector on {inst} reports fault {fid} (severity {level} of 3), "
                     "which amp-exporter's fault catalog does not know: no cause checks and "
                     "no runbook of its own.")
                     for inst, fid, tier, level in (("h1", "23", 2, "2"), ("h5", "31", 3, "3"),
                                                    ("h4", "32", 2, "?"))
                     for sev in tiers(tier)]},
                {"eval_time": "50m", "alertname": "CiscoAmpConnectorNotInstalled",
                 "exp_alerts": []},
                {"eval_time": "70m", "alertname": "CiscoAmpConnectorNotInstalled",
                 "exp_alerts": [alert(
                     "CiscoAmpConnectorNotInstalled", labels("h2"),
                     "No Cisco Secure Endpoint connector on h2.",
                     "amp-exporter runs on h2 but finds no connector installed (no "
                     "opt/cisco/amp/bin/ampdaemon): the host is unprotected, or amp-exporter "
                     "is deployed where it should not be.")]},
                {"eval_time": "20m", "alertname": "CiscoAmpConnectorDisconnected",
                 "exp_alerts": []},
                {"eval_time": "40m", "alertname": "CiscoAmpConnectorDisconnected",
                 "exp_alerts": [alert(
                     "CiscoAmpConnectorDisconnected", labels("h1"),
                     "Cisco Secure Endpoint on h1 is disconnected.",
                     "The connector on h1 has not been connected to the Cisco cloud for 30m: "
                     "it gets no policy or definition updates and its events do not reach "
                     "the console.")]},
                {"eval_time": "10m", "alertname": "CiscoAmpConnectorDegraded",
                 "exp_alerts": []},
                {"eval_time": "20m", "alertname": "CiscoAmpConnectorDegraded",
                 "exp_alerts": [
                     alert("CiscoAmpConnectorDegraded", labels("h1"),
                           "Cisco Secure Endpoint on h1 runs degraded.",
                           "The connector on h1 has reported a degraded mode for 15m.\n"
                           "Faults it reports: 23, 7."),
                     alert("CiscoAmpConnectorDegraded", labels("h3"),
                           "Cisco Secure Endpoint on h3 runs degraded.",
                           "The connector on h3 has reported a degraded mode for 15m.\n"
                           "It reports no fault."),
                 ]},
            ],
        },
        {
            "name": "exporter down, collector failing, early warnings",
            "interval": "1m",
            "input_series": [
                _series("up", "1x40", **J, instance="h1"),
                _series("up", "1 0x40", **J, instance="h2"),
                _series("up", "0x40", job="other", instance="h3"),
                _series("amp_exporter_scrape_collector_success", "0x40", **J, instance="h1",
                        collector="connector"),
                _series("amp_exporter_scrape_collector_success", "1x40", **J, instance="h1",
                        collector="kernel"),
                _series("amp_exporter_scrape_collector_success", "0x40", **J, instance="h2",
                        collector="selinux"),
                _series("amp_exporter_collector_errors_total", "0+1x40", **J, instance="h1",
                        collector="connector", reason="timeout"),
                _series("amp_exporter_collector_errors_total", "3x40", **J, instance="h1",
                        collector="connector", reason="parse"),
                _series("cisco_amp_scan_service_restarts_total", "0+1x40", **J, instance="h1"),
                _series("cisco_amp_scan_service_restarts_total", "0x40", **J, instance="h2"),
                _series("cisco_amp_event_pressure_ratio", "0.5 0.9x40", **J, instance="h1"),
                _series("cisco_amp_event_pressure_ratio", "0.5x40", **J, instance="h2"),
                # h3's daemon dies at minute 5 (and is back at 30); h4's stops answering
                # ampcli at minute 5; h5 answers throughout.
                *(_series("cisco_amp_connector_state", values, **J, instance=inst, state=state)
                  for inst, states in (
                      ("h3", {"answering": "1x4 0x25 1x10", "daemon_not_running":
                              "0x4 1x25 0x10", "not_answering": "0x40"}),
                      ("h4", {"answering": "1x4 0x36", "daemon_not_running": "0x40",
                              "not_answering": "0x4 1x36"}),
                      ("h5", {"answering": "1x40", "daemon_not_running": "0x40",
                              "not_answering": "0x40"}))
                  for state, values in states.items()),
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "CiscoAmpExporterDown", "exp_alerts": []},
                {"eval_time": "7m", "alertname": "CiscoAmpExporterDown",
                 "exp_alerts": [alert(
                     "CiscoAmpExporterDown", labels("h2"),
                     "amp-exporter on h2 cannot be scraped.",
                     "Prometheus has failed to scrape amp-exporter on h2 for 5m: the health of "
                     "its Cisco Secure Endpoint connector is unknown and its other alerts are "
                     "silenced.")]},
                {"eval_time": "30m", "alertname": "CiscoAmpExporterAbsent", "exp_alerts": []},
                *connector_state_checks(config, alert, labels),
                {"eval_time": "10m", "alertname": "CiscoAmpCollectorFailing", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "CiscoAmpCollectorFailing",
                 "exp_alerts": [
                     alert("CiscoAmpCollectorFailing", labels("h1", collector="connector"),
                           "amp-exporter collector connector fails on h1.",
                           "The connector collector of amp-exporter on h1 has failed for 15m: "
                           "its metrics are missing and the checks it owns cannot report.\n"
                           "Reasons: timeout."),
                     alert("CiscoAmpCollectorFailing", labels("h2", collector="selinux"),
                           "amp-exporter collector selinux fails on h2.",
                           "The selinux collector of amp-exporter on h2 has failed for 15m: "
                           "its metrics are missing and the checks it owns cannot report.\n"
                           "No error counted recently."),
                 ]},
                {"eval_time": "2m", "alertname": "CiscoAmpScanServiceRestarting",
                 "exp_alerts": []},
                {"eval_time": "20m", "alertname": "CiscoAmpScanServiceRestarting",
                 "exp_alerts": [alert(
                     "CiscoAmpScanServiceRestarting", labels("h1", "info", fault_id="6"),
                     "The scan service on h1 keeps restarting.",
                     "amp-exporter saw the scan service (ampscansvc) on h1 restart 10 times in "
                     "the last 10m. The connector raises fault 6 when this goes on.")]},
                {"eval_time": "9m", "alertname": "CiscoAmpEventPressureHigh", "exp_alerts": []},
                {"eval_time": "12m", "alertname": "CiscoAmpEventPressureHigh",
                 "exp_alerts": [alert(
                     "CiscoAmpEventPressureHigh", labels("h1", "info", fault_id="18"),
                     "System events on h1 near the connector's capacity.",
                     "Events on h1 have arrived at 90% of the configured capacity for 10m. The "
                     "connector raises fault 18 and watches fewer events when it cannot keep "
                     "up.")]},
            ],
        },
        definitions_tests(config, alert, labels),
        {
            "name": "no target at all",
            "interval": "1m",
            "input_series": [_series("up", "1x40", job="other", instance="h1")],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "CiscoAmpExporterAbsent", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "CiscoAmpExporterAbsent",
                 "exp_alerts": [alert(
                     "CiscoAmpExporterAbsent", {"job": job, "severity": "warning"},
                     f"No amp-exporter target selected by {config.selector} is scraped.",
                     f"Prometheus has had no target selected by {config.selector} for 15m: "
                     "service discovery or the scrape configuration lost every amp-exporter, "
                     "and no Cisco Secure Endpoint alert can fire.")]},
            ],
        },
    ]
    if config.deployment == "textfile":  # "down" and "absent" differ: textfile_tests
        groups = [g for g in groups if g["name"] != "no target at all"]
        for g in groups:
            g["alert_rule_test"] = [t for t in g["alert_rule_test"] if t["alertname"] not in (
                "CiscoAmpExporterDown", "CiscoAmpExporterAbsent", *ONE_SHOT_BLIND)]
    return _file(rule_files(config)[0], groups)


def definitions_tests(config: Config, alert, labels) -> dict:
    """CiscoAmpDefinitionsStale over days: promtool's time() starts at 0, so a database
    updated at 0 is as old as the evaluation time. d1's daily database stops at 0 (its main
    is years older), d2's is renewed every hour (its main just as old): only d1 alerts,
    warning past the warning age, and critical too past the critical age."""
    J = {"job": config.job}
    name = f"{ALERT_PREFIX}DefinitionsStale"
    warn, crit = (_seconds(d) // 3600 for d in (config.definitions_stale_warning,
                                                config.definitions_stale_critical))
    wait = _seconds(config.definitions_stale_for) // 3600
    steps = (crit + wait + 3) * 12  # samples every 5m: within the lookback of each eval
    updated = "cisco_amp_definitions_updated_timestamp_seconds"

    def fired(at: int, severity: str, after: str) -> dict:
        age = f"{at // 24}d {at % 24}h 0m 0s"
        return alert(name, labels("d1", severity), f"Virus definitions on d1 are {age} old.",
                     f"The newest virus definitions database on d1 was updated {age} ago "
                     f"(more than {after}): the connector has not received definition "
                     "updates and does not detect recent malware.")

    def at(hour: int) -> str:
        return f"{hour}h"

    early, mid, late = warn - 1, warn + wait + 1, crit + wait + 1
    return {
        "name": "definitions stale",
        "interval": "5m",
        "input_series": [
            _series(updated, f"0x{steps}", **J, instance="d1", database="daily.cvd"),
            _series(updated, f"-100000000x{steps}", **J, instance="d1", database="main.cvd"),
            _series(updated, f"0+300x{steps}", **J, instance="d2", database="daily.cvd"),
            _series(updated, f"-100000000x{steps}", **J, instance="d2", database="main.cvd"),
        ],
        "alert_rule_test": [
            {"eval_time": at(early), "alertname": name, "exp_alerts": []},
            {"eval_time": at(mid), "alertname": name,
             "exp_alerts": [fired(mid, "warning", config.definitions_stale_warning)]},
            {"eval_time": at(late), "alertname": name,
             "exp_alerts": [fired(late, "warning", config.definitions_stale_warning),
                            fired(late, "critical", config.definitions_stale_critical)]},
        ],
    }


def connector_state_checks(config: Config, alert, labels) -> list[dict]:
    """The daemon of h3 is gone from minute 5 and h4's stops answering from minute 5: each
    pages once its `for:` is over, and not before; the daemon's return clears it."""
    daemon = minutes(config.daemon_not_running_for)
    silent = minutes(config.not_answering_for)
    dead = alert(
        "CiscoAmpConnectorDaemonNotRunning", labels("h3", "critical", state="daemon_not_running"),
        "The connector daemon (ampdaemon) is not running; h3 is unprotected.",
        f"On h3, for {config.daemon_not_running_for}: The connector is installed but no "
        "ampdaemon process runs, and ampcli gets no answer: nothing monitors or protects the "
        "host.\nNext: Start it with systemctl start cisco-amp (upstart: initctl start "
        "cisco-amp); why it stopped: systemctl status cisco-amp, journalctl -u cisco-amp and "
        "/var/log/cisco/ampdaemon.log (upstart: /var/log/messages).")
    hung = alert(
        "CiscoAmpConnectorNotAnswering", labels("h4", "critical", state="not_answering"),
        "The connector daemon runs but does not answer `ampcli status`; its protection cannot "
        "be confirmed.",
        f"On h4, for {config.not_answering_for}: ampdaemon runs but `ampcli status` does not "
        "answer (it timed out, failed, or printed something that is not a status): the daemon "
        "may be hung, and whether it protects the host cannot be told.\nNext: Run "
        "/opt/cisco/amp/bin/ampcli status by hand and read /var/log/cisco/ampdaemon.log; if it "
        "stays silent, restart it with systemctl restart cisco-amp (upstart: initctl restart "
        "cisco-amp).")
    return [
        {"eval_time": f"{4 + daemon}m", "alertname": "CiscoAmpConnectorDaemonNotRunning",
         "exp_alerts": []},
        {"eval_time": f"{5 + daemon}m", "alertname": "CiscoAmpConnectorDaemonNotRunning",
         "exp_alerts": [dead]},
        {"eval_time": "31m", "alertname": "CiscoAmpConnectorDaemonNotRunning",
         "exp_alerts": []},
        {"eval_time": f"{4 + silent}m", "alertname": "CiscoAmpConnectorNotAnswering",
         "exp_alerts": []},
        {"eval_time": f"{5 + silent}m", "alertname": "CiscoAmpConnectorNotAnswering",
         "exp_alerts": [hung]},
    ]


# -- recording rules -----------------------------------------------------------------------

def recording_tests(config: Config = DEFAULT) -> dict:
    job = config.job
    J = {"job": job}
    series = [
        _series("up", "1x10", **J, instance="h1"),
        _series("up", "1x10", **J, instance="h2"),
        _series("up", "0x10", **J, instance="h3"),
        _series("up", "1x10", job="other", instance="h9"),
        _series("cisco_amp_fault_active", "1x10", **J, instance="h1", fault_id="7"),
        _series("cisco_amp_fault_active", "1x10", **J, instance="h1", fault_id="23"),
        _series("cisco_amp_fault_active", "0x10", **J, instance="h1", fault_id="6"),
        _series("cisco_amp_fault_active", "1x10", **J, instance="h2", fault_id="7"),
        _series("cisco_amp_fault_active", "0x10", **J, instance="h3", fault_id="7"),
        _series("cisco_amp_fault_active", "1x10", job="other", instance="h9", fault_id="7"),
        _series("cisco_amp_fault_severity", "3x10", **J, instance="h1", fault_id="7"),
        _series("cisco_amp_fault_severity", "2x10", **J, instance="h1", fault_id="23"),
        _series("cisco_amp_fault_severity", "1x10", **J, instance="h2", fault_id="7"),
        _series("cisco_amp_fault_severity", "0x10", **J, instance="h3", fault_id="7"),
        _series("cisco_amp_connector_info", "1x10", **J, instance="h1", version="1.26.0"),
        _series("cisco_amp_connector_info", "1x10", **J, instance="h2", version="1.26.0"),
        _series("cisco_amp_connector_info", "1x10", **J, instance="h3", version="1.25.1"),
        _series("cisco_amp_connector_installed", "1x10", **J, instance="h1"),
        _series("cisco_amp_connector_installed", "0x10", **J, instance="h2"),
        *(_series("cisco_amp_connector_state", f"{int(state == now)}x10", **J, instance=inst,
                  state=state)
          for inst, now in (("h1", "answering"), ("h2", "not_installed"),
                            ("h3", "daemon_not_running"))
          for state in ("answering", "not_installed", "daemon_not_running")),
        _series("cisco_amp_connector_connected", "0x10", **J, instance="h1"),
        _series("cisco_amp_connector_connected", "1x10", **J, instance="h3"),
        _series("cisco_amp_connector_degraded", "1x10", **J, instance="h1"),
        _series("cisco_amp_connector_degraded", "0x10", **J, instance="h3"),
        _series("amp_exporter_scrape_collector_success", "0x10", **J, instance="h1",
                collector="connector"),
        _series("amp_exporter_scrape_collector_success", "1x10", **J, instance="h2",
                collector="connector"),
        # 60 and 120 events per second: 3600 and 7200 per minute.
        _series("cisco_amp_host_events_total", "0+3600x10", **J, instance="h1",
                event="process_exec"),
        _series("cisco_amp_host_events_total", "0+3600x10", **J, instance="h1",
                event="file_open"),
        _series("cisco_amp_host_events_total", "0+3600x10", **J, instance="h2",
                event="process_fork"),
    ]

    def exp(labels: dict, value: float) -> dict:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return {"labels": "{" + inner + "}" if inner else "", "value": value}

    def q(expr: str, *samples: dict) -> dict:
        return {"expr": expr, "eval_time": "10m", "exp_samples": list(samples)}

    severity = {"none": 1, "minor": 1, "major": 0, "critical": 1}
    tests = [
        q("instance:cisco_amp_fault_active:sum",
          exp({"__name__": "instance:cisco_amp_fault_active:sum", **J, "instance": "h1"}, 2),
          exp({"__name__": "instance:cisco_amp_fault_active:sum", **J, "instance": "h2"}, 1),
          exp({"__name__": "instance:cisco_amp_fault_active:sum", **J, "instance": "h3"}, 0)),
        q("instance:cisco_amp_fault_severity:max",
          *(exp({"__name__": "instance:cisco_amp_fault_severity:max", **J, "instance": h}, v)
            for h, v in (("h1", 3), ("h2", 1), ("h3", 0)))),
        q("job:cisco_amp_fault_active:sum",
          *(exp({"__name__": "job:cisco_amp_fault_active:sum", **J, "fault_id": fid}, v)
            for fid, v in (("23", 1), ("6", 0), ("7", 2)))),
        q("job:cisco_amp_hosts_faulty:sum",
          exp({"__name__": "job:cisco_amp_hosts_faulty:sum", **J}, 2)),
        q("job:cisco_amp_hosts_by_severity:sum",
          *(exp({"__name__": "job:cisco_amp_hosts_by_severity:sum", **J, "severity": s}, v)
            for s, v in severity.items())),
        q("job:cisco_amp_connector_version:count",
          exp({"__name__": "job:cisco_amp_connector_version:count", **J,
               "version": "1.25.1"}, 1),
          exp({"__name__": "job:cisco_amp_connector_version:count", **J,
               "version": "1.26.0"}, 2)),
        q("job:cisco_amp_connector_state:sum",
          *(exp({"__name__": "job:cisco_amp_connector_state:sum", **J, "state": state}, 1)
            for state in ("answering", "daemon_not_running", "not_installed"))),
        q("job:cisco_amp_connector_not_installed:sum",
          exp({"__name__": "job:cisco_amp_connector_not_installed:sum", **J}, 1)),
        q("job:cisco_amp_connector_disconnected:sum",
          exp({"__name__": "job:cisco_amp_connector_disconnected:sum", **J}, 1)),
        q("job:cisco_amp_connector_degraded:sum",
          exp({"__name__": "job:cisco_amp_connector_degraded:sum", **J}, 1)),
        q("job:amp_exporter_collector_failing:sum",
          exp({"__name__": "job:amp_exporter_collector_failing:sum", **J,
               "collector": "connector"}, 1)),
        q("job:up:sum", exp({"__name__": "job:up:sum", **J}, 2)),
        # rounded: rate() divides in floating point (60.000000000000001).
        q("round(instance:cisco_amp_host_events:rate5m, 0.001)",
          exp({**J, "instance": "h1"}, 120), exp({**J, "instance": "h2"}, 60)),
    ]
    return {"rule_files": [f"../{rule_files(config)[1].rsplit('/', 1)[1]}"],
            "evaluation_interval": "1m",
            "tests": [{"name": "recording rules", "interval": "1m", "input_series": series,
                       "promql_expr_test": tests}]}


def textfile_tests(config: Config = TEXTFILE) -> dict:
    """What differs when node_exporter serves the textfile: `up` is node_exporter's, so only
    hosts that served amp-exporter's series count; a file that is not renewed alerts."""
    J = {"job": config.job}
    stale = minutes(config.textfile_stale_after)

    def lab(instance: str) -> dict:
        return {**J, "instance": instance, "severity": "warning"}

    def alert(name, lab, summary, description):
        return _alert(name, config, lab, summary, description)

    build = {"version": "0.1.0", "python": "3.11.2"}
    rules, recording = rule_files(config)
    test = _file(rules, [
        {
            "name": "textfile: node_exporter down, file stale or gone",
            "interval": "1m",
            "input_series": [
                # n1 serves amp-exporter's file and goes down at minute 10; n2 never served
                # it (no connector there) and is down too: only n1 alerts.
                _series("up", "1x9 0x30", **J, instance="n1"),
                _series("up", "0x40", **J, instance="n2"),
                _series("amp_exporter_build_info", "1x9 _x30", **J, instance="n1", **build),
                _series("amp_exporter_textfile_write_timestamp_seconds", "0+60x9 _x30", **J,
                        instance="n1"),
                # n3's timer stops writing at minute 5 (the value stays); n4's file is removed
                # at minute 5 (the series goes); n5 is renewed every minute.
                _series("up", "1x40", **J, instance="n3"),
                _series("amp_exporter_build_info", "1x40", **J, instance="n3", **build),
                _series("amp_exporter_textfile_write_timestamp_seconds", "0+60x5 300x35", **J,
                        instance="n3"),
                _series("up", "1x40", **J, instance="n4"),
                _series("amp_exporter_build_info", "1x5 _x35", **J, instance="n4", **build),
                _series("amp_exporter_textfile_write_timestamp_seconds", "0+60x5 _x35", **J,
                        instance="n4"),
                _series("amp_exporter_textfile_write_timestamp_seconds", "0+60x40", **J,
                        instance="n5"),
            ],
            "alert_rule_test": [
                {"eval_time": "14m", "alertname": "CiscoAmpExporterDown", "exp_alerts": []},
                {"eval_time": "16m", "alertname": "CiscoAmpExporterDown",
                 "exp_alerts": [alert(
                     "CiscoAmpExporterDown", lab("n1"),
                     "node_exporter on n1, which serves amp-exporter's textfile, cannot be "
                     "scraped.",
                     "Prometheus has failed to scrape node_exporter on n1 for 5m: the health "
                     "of its Cisco Secure Endpoint connector is unknown and its other alerts "
                     "are silenced.")]},
                {"eval_time": f"{5 + stale}m", "alertname": "CiscoAmpTextfileStale",
                 "exp_alerts": []},
                {"eval_time": f"{6 + stale}m", "alertname": "CiscoAmpTextfileStale",
                 "exp_alerts": [alert(
                     "CiscoAmpTextfileStale", lab(inst),
                     f"amp-exporter's textfile on {inst} is not renewed.",
                     f"The amp-exporter textfile that node_exporter serves on {inst} was last "
                     f"written {stale + 1}m 0s ago (or is gone): the connector's state shown "
                     "for that host is old, and a fault or a dead daemon there would not be "
                     "seen.") for inst in ("n3", "n4")]},
                {"eval_time": "30m", "alertname": "CiscoAmpExporterAbsent", "exp_alerts": []},
            ],
            # counted: n1 while up, n3 and n4 (both still up); never n2, which never
            # served amp-exporter's series.
            "promql_expr_test": [
                {"expr": "job:up:sum", "eval_time": "8m", "exp_samples": [
                    {"labels": f'{{__name__="job:up:sum",job="{config.job}"}}', "value": 3}]},
                {"expr": "job:up:sum", "eval_time": "12m", "exp_samples": [
                    {"labels": f'{{__name__="job:up:sum",job="{config.job}"}}', "value": 2}]},
            ],
        },
        {
            "name": "textfile: no host serves the series",
            "interval": "1m",
            "input_series": [_series("up", "1x40", **J, instance="n1")],
            "alert_rule_test": [
                {"eval_time": "14m", "alertname": "CiscoAmpExporterAbsent", "exp_alerts": []},
                {"eval_time": "16m", "alertname": "CiscoAmpExporterAbsent",
                 "exp_alerts": [alert(
                     "CiscoAmpExporterAbsent", {"severity": "warning", **J},
                     "No host serves amp-exporter's textfile series.",
                     f"No target selected by {config.selector} has served "
                     "amp_exporter_build_info for 15m: no amp-exporter textfile is read "
                     "anywhere (the timer does not run, or writes where node_exporter does not "
                     "read), and no Cisco Secure Endpoint alert can fire.")]},
            ],
        },
    ])
    test["rule_files"].append(f"../{recording.rsplit('/', 1)[1]}")
    return test


def rule_tests(config: Config = DEFAULT) -> dict[str, dict]:
    """Tests of the exporter deployment's rules, and of the textfile deployment's."""
    files = {f"{TEST_DIR}/faults.yaml": fault_tests(config),
             f"{TEST_DIR}/connector.yaml": connector_tests(config),
             f"{TEST_DIR}/recording.yaml": recording_tests(config)}
    textfile = f"{TEXTFILE_DIR}/tests"
    files[f"{textfile}/faults.yaml"] = fault_tests(TEXTFILE)
    files[f"{textfile}/connector.yaml"] = connector_tests(TEXTFILE)
    files[f"{textfile}/textfile.yaml"] = textfile_tests(TEXTFILE)
    return files
