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

from amp_exporter.catalog import CONNECTOR_STATES, FAULTS, Fault
from amp_exporter.monitoring.config import ALERT_PREFIX, DEFAULT, Config

Rule = dict[str, Any]

RULES_FILE = "alerts/amp-exporter.rules.yml"
RECORDING_FILE = "alerts/amp-exporter.recording.yml"
# The same rules for the textfile deployment (config.TEXTFILE).
TEXTFILE_DIR = "alerts/textfile"

SEVERITY_WORDS = ("none", "minor", "major", "critical")  # cisco_amp_fault_severity 0..3
# The connector's severity, as cisco_amp_fault_severity says it, decides how an alert on
# its fault reaches a person: Critical pages, Major warns, Minor informs.
ALERT_SEVERITY_BY_LEVEL = {1: "info", 2: "warning", 3: "critical"}
LEVEL_BY_ALERT_SEVERITY = {v: k for k, v in ALERT_SEVERITY_BY_LEVEL.items()}


def rule_files(config: Config = DEFAULT) -> tuple[str, str]:
    """(alert rules, recording rules) of the deployment CONFIG describes."""
    if config.deployment == "textfile":
        return (f"{TEXTFILE_DIR}/amp-exporter.rules.yml",
                f"{TEXTFILE_DIR}/amp-exporter.recording.yml")
    return RULES_FILE, RECORDING_FILE


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


_MATCHER = re.compile(r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*')


def check_selector(selector: str) -> None:
    """ValueError unless SELECTOR is comma-separated label matchers (no braces), as every
    rule pastes it inside {...}."""
    parts = re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', selector)  # commas outside quotes
    if not selector.strip() or not all(_MATCHER.fullmatch(p) for p in parts):
        raise ValueError(f"--selector {selector!r}: not label matchers such as "
                         'job="node",env="prod"')


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
        causes = "cisco_amp_fault_cause{job=%q,instance=%q,fault_id=\"" + str(fault.id) + "\"}"
        # Three answers: causes found; checked and none found; not checked (the collector
        # failed, or the textfile deployment, which cannot measure event pressure).
        found = (_query(causes + " == 1", TARGET) + ' | sortByLabel "cause" }}'
                 "Causes the exporter found: " + _list("cause") + ".{{ else }}" +
                 _query(causes, TARGET) + " }}"
                 "The exporter found none of the causes it checks (" +
                 ", ".join(fault.cause_names) + ").{{ else }}The exporter could not check "
                 "this fault's causes on this host.{{ end }}{{ end }}")
    else:
        found = "The exporter has no check of its own for this fault's causes."
    return (_sentence(f"The connector on {{{{ $labels.instance }}}} reports fault {fault.id} "
                      f"({fault.title}).", fault.meaning, fault.impact) + "\n" + found)


def fault_summary(fault: Fault) -> str:
    return f"Fault {fault.id} on {{{{ $labels.instance }}}}: {fault.title}."


def tier_expr(matchers: str, level: int, default: str) -> str:
    """PromQL for the severity tier LEVEL of the faults MATCHERS select: active while the
    connector reports them at LEVEL or worse, or reports no severity and the catalog's
    DEFAULT is at LEVEL or worse."""
    active = f"cisco_amp_fault_active{matchers} == 1"
    expr = f"({active} and cisco_amp_fault_severity{matchers} >= {level})"
    if level <= LEVEL_BY_ALERT_SEVERITY[default]:
        expr += f"\nor ({active} unless cisco_amp_fault_severity{matchers} > 0)"
    return expr


def severity_tiers(name: str, matchers: str, default: str, rule: Rule) -> list[Rule]:
    """One rule per severity, as the mixins' warning/critical tiers: the tiers up to the
    connector's severity fire together, and Alertmanager mutes the lower ones (critical
    over warning, both over info: alertmanager.py). A fault the connector raises from Major
    to Critical adds the critical tier; the warning tier goes on firing, so nothing
    resolves that is still raised, and no `for:` starts again below the new severity."""
    return [{"alert": name, "expr": tier_expr(matchers, level, default), **rule,
             "labels": {"severity": severity, **rule.get("labels", {})}}
            for level, severity in sorted(ALERT_SEVERITY_BY_LEVEL.items(), reverse=True)]


def fault_alert(fault: Fault, config: Config) -> list[Rule]:
    return severity_tiers(
        fault_alert_name(fault), _sel(config, f'fault_id="{fault.id}"'), fault.alert_severity,
        {"for": fault.alert_for,
         "annotations": {"summary": fault_summary(fault),
                         "description": fault_description(fault)}})


def known_fault_regex() -> str:
    return "|".join(str(f.id) for f in FAULTS)


# -- alerts that are not one connector fault -----------------------------------------------

def other_alerts(config: Config) -> list[Rule]:
    sel = _sel(config)
    known = known_fault_regex()
    return [
        *severity_tiers(f"{ALERT_PREFIX}UnknownFaultReported",
                        _sel(config, f'fault_id!~"{known}"'), "warning", {
            "for": config.unknown_fault_for,
            "annotations": {
                "summary": "Unknown fault {{ $labels.fault_id }} on {{ $labels.instance }}.",
                "description": "The connector on {{ $labels.instance }} reports fault "
                "{{ $labels.fault_id }} (severity " +
                _query("cisco_amp_fault_severity{job=%q,instance=%q,fault_id=%q}", TARGET,
                       "$labels.fault_id") + " }}{{ . | first | value }}{{ else }}?{{ end }}"
                " of 3), which amp-exporter's fault catalog does not know: no cause "
                "checks and no runbook of its own.",
            },
        }),
        *exporter_alerts(config),
        *connector_state_alerts(config),
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
        *definitions_stale(config),
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


DEFINITIONS_UPDATED = "cisco_amp_definitions_updated_timestamp_seconds"


def definitions_stale(config: Config) -> list[Rule]:
    """The newest definitions database older than the warning, then the critical age."""
    age = f"time() - max without (database) ({DEFINITIONS_UPDATED}{_sel(config)})"
    rules = []
    for severity, after in (("warning", config.definitions_stale_warning),
                            ("critical", config.definitions_stale_critical)):
        rules.append({
            "alert": f"{ALERT_PREFIX}DefinitionsStale",
            "expr": f"{age} > {_seconds(after)}",
            "for": config.definitions_stale_for,
            "labels": {"severity": severity},
            "annotations": {
                "summary": "Virus definitions on {{ $labels.instance }} are "
                "{{ $value | humanizeDuration }} old.",
                "description": "The newest virus definitions database on "
                "{{ $labels.instance }} was updated {{ $value | humanizeDuration }} ago "
                f"(more than {after}): the connector has not received definition updates "
                "and does not detect recent malware.",
            },
        })
    return rules


def exporter_down(config: Config, expr: str, what: str, which: str = "") -> Rule:
    """The host's target cannot be scraped: WHAT (amp-exporter, or the node_exporter that
    serves its textfile, WHICH saying so) is down or unreachable."""
    return {
        "alert": f"{ALERT_PREFIX}ExporterDown",
        "expr": expr,
        "for": config.exporter_down_for,
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": f"{what} on {{{{ $labels.instance }}}}{which} cannot be scraped.",
            "description": f"Prometheus has failed to scrape {what} on {{{{ $labels.instance }}}} "
            f"for {config.exporter_down_for}: the health of its Cisco Secure Endpoint connector "
            "is unknown and its other alerts are silenced.",
        },
    }


def exporter_alerts(config: Config) -> list[Rule]:
    """Whether the series can be read at all: "down" for one host, "absent" for all. In the
    textfile deployment `up` is node_exporter's, so both look only at hosts that served
    amp-exporter's series lately, and a file that stops being renewed has its own alert."""
    sel = _sel(config)
    if config.deployment == "textfile":
        served = f"{LAST_WRITE}{sel}"
        return [
            exporter_down(config, f"up{sel} == 0 and on (job, instance) {served}",
                          "node_exporter", ", which serves amp-exporter's textfile,"),
            {
                "alert": f"{ALERT_PREFIX}ExporterAbsent",
                "expr": f"absent(amp_exporter_build_info{sel})",
                "for": config.target_absent_for,
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "No host serves amp-exporter's textfile series.",
                    "description": "No target selected by " + config.selector + " has served "
                    f"amp_exporter_build_info for {config.target_absent_for}: no "
                    "amp-exporter textfile is read anywhere (the timer does not run, or "
                    "writes where node_exporter does not read), and no Cisco Secure Endpoint "
                    "alert can fire.",
                },
            },
            {
                "alert": f"{ALERT_PREFIX}TextfileStale",
                "expr": f"time() - {LAST_WRITE}{sel} > {_seconds(config.textfile_stale_after)}",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "amp-exporter's textfile on {{ $labels.instance }} is not "
                    "renewed.",
                    "description": "The amp-exporter textfile that node_exporter serves on "
                    "{{ $labels.instance }} was last written {{ $value | humanizeDuration }} "
                    "ago (or is gone): the connector's state shown for that host is old, and "
                    "a fault or a dead daemon there would not be seen.",
                },
            },
        ]
    return [
        exporter_down(config, f"up{sel} == 0", "amp-exporter"),
        {
            "alert": f"{ALERT_PREFIX}ExporterAbsent",
            "expr": f"absent(up{sel})",
            "for": config.target_absent_for,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "No amp-exporter target selected by " + config.selector + " is "
                "scraped.",
                "description": "Prometheus has had no target selected by " + config.selector +
                f" for {config.target_absent_for}: service discovery or the scrape "
                "configuration lost every amp-exporter, and no Cisco Secure Endpoint alert "
                "can fire.",
            },
        },
    ]


# textfile: when each host's file was last written, remembered for textfile_lookback after
# the file (or its node_exporter) is gone, so "down" and "stale" know which hosts served
# amp-exporter's series. A rule that reads its own last value costs one series per host
# and evaluation, where max_over_time(...[1d]) would read a day of samples every time.
LAST_WRITE = "instance:amp_exporter_textfile_write_timestamp_seconds:last1d"


def textfile_memory(config: Config) -> dict:
    sel = _sel(config)
    return {"name": "cisco-amp-textfile-hosts", "rules": [{
        "record": LAST_WRITE,
        "expr": f"amp_exporter_textfile_write_timestamp_seconds{sel}\n"
                f"or ({LAST_WRITE}{sel} > time() - {_seconds(config.textfile_lookback)})"}]}


def connector_state_alerts(config: Config) -> list[Rule]:
    """A connector that is installed but cannot protect: its daemon is gone, or it does not
    answer. Both page: there is no fault to see while the connector is silent."""
    wait = {"daemon_not_running": config.daemon_not_running_for,
            "not_answering": config.not_answering_for}
    rules = []
    for state in CONNECTOR_STATES:
        if state.alert is None:
            continue
        matchers = _sel(config, f'state="{state.name}"')
        rules.append({
            "alert": ALERT_PREFIX + state.alert,
            "expr": f"cisco_amp_connector_state{matchers} == 1",
            "for": wait[state.name],
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": _capital(state.headline.split(": ", 1)[1].replace(
                    "this host", "{{ $labels.instance }}")),
                "description": f"On {{{{ $labels.instance }}}}, for {wait[state.name]}: "
                + state.meaning + "\nNext: " + state.next_step,
            },
        })
    return rules


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd])", duration)
    assert match, f"unsupported duration {duration!r}"
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def add_runbook_links(groups: list[dict], config: Config = DEFAULT) -> list[dict]:
    """Give every alert a runbook_url (docs/runbooks/<anchor>.md), in one pass; with a
    cluster label, keep it through every aggregation and name it in each description."""
    for group in groups:
        for rule in group["rules"]:
            if "alert" in rule:
                rule.setdefault("annotations", {})["runbook_url"] = runbook_url(
                    rule["alert"], config)
            keep_cluster(rule, config)
    return groups


_BY_JOB = re.compile(r"\b(by|on) \(job\b")


def keep_cluster(rule: Rule, config: Config) -> Rule:
    """With config.cluster_label: RULE's aggregations and joins keep the label (every
    `by (job...` and `on (job...`), and an alert's description says the cluster."""
    name = config.cluster_label
    if name is None:
        return rule
    rule["expr"] = _BY_JOB.sub(rf"\1 (job, {name}", rule["expr"])
    if "alert" in rule:
        notes = rule["annotations"] = dict(rule.get("annotations", {}))  # tiers share one
        notes["description"] = (notes.get("description", "") +
                                f"{{{{ with $labels.{name} }}}}\n{_capital(name)}: "
                                "{{ . }}.{{ end }}")
        notes[name] = f"{{{{ $labels.{name} }}}}"
    return rule


# Alerts that cannot fire in the textfile deployment: a one-shot `amp-exporter textfile`
# measures no rate, so there is no event pressure (fault 18 itself still alerts).
ONE_SHOT_BLIND = (f"{ALERT_PREFIX}EventPressureHigh",)


def alert_groups(config: Config = DEFAULT) -> list[dict]:
    groups = [
        {"name": "cisco-amp-faults",
         "rules": [r for f in FAULTS for r in fault_alert(f, config)]},
        {"name": "cisco-amp-connector", "rules": [
            r for r in other_alerts(config) if r["alert"] not in ONE_SHOT_BLIND
            or config.deployment == "exporter"]},
    ]
    if config.deployment == "textfile":
        groups.insert(0, textfile_memory(config))
    # One name may have several severity tiers, never two rules of one severity.
    keys = [(r["alert"], r["labels"]["severity"]) for g in groups for r in g["rules"]
            if "alert" in r]
    assert len(keys) == len(set(keys)), f"duplicate alerts: {keys}"
    return add_runbook_links(groups, config)


def alert_names(config: Config = DEFAULT) -> list[str]:
    """Every alert name once, in rule order."""
    return list(dict.fromkeys(r["alert"] for g in alert_groups(config) for r in g["rules"]
                              if "alert" in r))


def is_tiered(name: str) -> bool:
    """Whether NAME takes the connector's severity: one rule per severity tier (every
    catalog fault's alert, and the unknown fault's)."""
    return name == f"{ALERT_PREFIX}UnknownFaultReported" or name in {
        fault_alert_name(f) for f in FAULTS}


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
        {"record": "job:cisco_amp_connector_state:sum",
         "expr": f"sum by (job, state) (cisco_amp_connector_state{sel})"},
        {"record": "job:cisco_amp_connector_not_installed:sum",
         "expr": f"sum by (job) (1 - cisco_amp_connector_installed{sel})"},
        {"record": "job:cisco_amp_connector_disconnected:sum",
         "expr": f"sum by (job) (1 - cisco_amp_connector_connected{sel})"},
        {"record": "job:cisco_amp_connector_degraded:sum",
         "expr": f"sum by (job) (cisco_amp_connector_degraded{sel})"},
        {"record": "job:amp_exporter_collector_failing:sum",
         "expr": f"sum by (job, collector) (1 - amp_exporter_scrape_collector_success{sel})"},
        {"record": "job:up:sum",  # textfile: only the node_exporters that serve our file
         "expr": f"sum by (job) (up{sel})" if config.deployment == "exporter" else
                 f"sum by (job) (up{sel} and on (job, instance) {LAST_WRITE}{sel})"},
        {"record": "instance:cisco_amp_host_events:rate5m",
         "expr": f"sum by (job, instance) (rate(cisco_amp_host_events_total{sel}[5m]))"},
    ]
    return [{"name": "cisco-amp-recording", "rules": [keep_cluster(r, config) for r in rules]}]


def recording_names(config: Config = DEFAULT) -> list[str]:
    return list(dict.fromkeys(r["record"] for g in recording_groups(config)
                              for r in g["rules"]))
