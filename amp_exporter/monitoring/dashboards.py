"""Grafana dashboards (fleet overview, one host) as plain Python data, dumped to JSON.

Why plain data and not grafana-foundation-sdk: the SDK is alpha, needs Python 3.11+ while
amp-exporter supports 3.9, and must be pinned to an exact version that carries a Grafana
version in its name; the dashboards use a handful of panel types and fields that have
been stable across Grafana 9-11 (stat, timeseries, table, bargauge, row). A few small
functions below build them, tests check their structure, and the integration test runs
every query against a real Prometheus.

Both dashboards have the variables `datasource`, `job` and `instance` (multi-select, All by
default). Every query selects job=~"$job", so the `job` selector of config.py is only the
variable's default. Every host dashboard query selects instance=~"$instance" too. The
fleet dashboard reads the recording rules of alerts.py, so its panels stay cheap on a
large fleet: its per-host panels (tables, top lists) select instance=~"$instance", but its
fleet totals read `job:` rules, which have summed the hosts away and have no `instance`
label to select on; they count the whole job whatever `instance` says (JOB_WIDE below
and their panel descriptions say so).
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from amp_exporter.monitoring.config import DEFAULT, FLEET_DASHBOARD_UID, HOST_DASHBOARD_UID, Config

Panel = dict[str, Any]

FLEET_FILE = "dashboards/amp-fleet.json"
HOST_FILE = "dashboards/amp-host.json"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
J = 'job=~"$job"'
JI = 'job=~"$job",instance=~"$instance"'
# Appended to the description of fleet panels that read `job:` recording rules only.
JOB_WIDE = " Whole job: the Host variable does not narrow it (a job: recording rule)."


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False,
           table: bool = False) -> dict:
    t: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "refId": ref,
                         "legendFormat": legend or "__auto"}
    if instant or table:
        t["instant"] = True
        t["range"] = False
    if table:
        t["format"] = "table"
    return t


class Layout:
    """Places panels left to right on a 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[Panel] = []
        self.x = self.y = self.row_h = 0

    def add(self, panel: Panel, w: int, h: int) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        panel["id"] = len(self.panels) + 1
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.row_h = 0, self.y + 1, 0


def panel(kind: str, title: str, targets: list[dict], description: str = "",
          unit: Optional[str] = None, mappings: Optional[list] = None,
          thresholds: Optional[list] = None, options: Optional[dict] = None,
          transformations: Optional[list] = None) -> Panel:
    defaults: dict[str, Any] = {}
    if unit:
        defaults["unit"] = unit
    if mappings:
        defaults["mappings"] = mappings
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
        defaults["color"] = {"mode": "thresholds"}
    assert description, f"panel {title!r} needs a description"
    p: Panel = {"type": kind, "title": title, "datasource": DATASOURCE, "targets": targets,
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "options": options or {}, "description": description}
    if transformations:
        p["transformations"] = transformations
    return p


def _steps(*pairs: tuple[Optional[float], str]) -> list[dict]:
    return [{"value": v, "color": c} for v, c in pairs]


OK_BAD = _steps((None, "green"), (1, "red"))
BAD_OK = _steps((None, "red"), (1, "green"))
YES_NO = [{"type": "value", "options": {"0": {"text": "no"}, "1": {"text": "yes"}}}]
SEVERITY_TEXT = [{"type": "value", "options": {
    "0": {"text": "none", "color": "green"}, "1": {"text": "minor", "color": "yellow"},
    "2": {"text": "major", "color": "orange"}, "3": {"text": "critical", "color": "red"}}}]
STAT = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background", "graphMode": "none", "textMode": "auto"}


def _table_hide(*names: str, merge: bool = False) -> list[dict]:
    """Table transformations: merge the queries' frames (when MERGE), hide NAMES."""
    hide = [{"id": "organize", "options": {"excludeByName": dict.fromkeys(names, True)}}]
    return [{"id": "merge", "options": {}}, *hide] if merge else hide


def host_link(panel_: Panel) -> Panel:
    """PANEL (a table with an instance column) with each row's instance linked to the host
    dashboard, keeping the data source, job and time range."""
    panel_["fieldConfig"]["overrides"].append({
        "matcher": {"id": "byName", "options": "instance"},
        "properties": [{"id": "links", "value": [{
            "title": "Host detail for ${__data.fields.instance}",
            "url": HOST_ROW_LINK, "targetBlank": False}]}],
    })
    return panel_


HOST_ROW_LINK = (f"/d/{HOST_DASHBOARD_UID}?var-datasource=${{datasource}}&var-job=${{job}}"
                 "&var-instance=${__data.fields.instance}&${__url_time_range}")


def fault_runbooks(config: Config) -> Panel:
    """A text panel: every catalog fault, linked to its runbook."""
    from amp_exporter.catalog import FAULTS
    from amp_exporter.monitoring.alerts import fault_alert_name, runbook_url
    lines = ["| fault | runbook |", "|---|---|"]
    lines += [f"| {f.id} | [{f.title}]({runbook_url(fault_alert_name(f), config)}) |"
              for f in FAULTS]
    return {"type": "text", "title": "Fault runbooks",
            "description": "What each catalog fault means and what to do about it: the runbook "
            "its alert links to.",
            "options": {"mode": "markdown", "content": "\n".join(lines) + "\n"}}


def _variables(config: Config) -> dict:
    return {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": ""},
        _query_variable("job", "Job", "label_values(amp_exporter_build_info, job)",
                        default=config.job),
        _query_variable("instance", "Host",
                        'label_values(amp_exporter_build_info{job=~"$job"}, instance)',
                        include_all=True),
    ]}


def _query_variable(name: str, label: str, query: str, default: str = "",
                    include_all: bool = False) -> dict:
    if include_all:  # start on All: the fleet dashboard shows every host unless narrowed
        current: dict[str, Any] = {"text": ["All"], "value": ["$__all"]}
    else:
        current = {"text": default, "value": default} if default else {}
    v: dict[str, Any] = {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "definition": query, "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2, "sort": 1, "hide": 0, "multi": include_all, "includeAll": include_all,
        "regex": "", "current": current,
    }
    if include_all:
        v["allValue"] = ".+"
    return v


def _dashboard(uid: str, title: str, description: str, layout: Layout, config: Config,
               links: list[dict]) -> dict:
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["amp-exporter", "cisco-secure-endpoint"],
        "timezone": "browser", "editable": True, "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION, "version": 1,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
        "templating": _variables(config),
        "annotations": {"list": []}, "links": links,
        "panels": layout.panels,
    }


def _link(title: str, uid: str) -> dict:
    return {"title": title, "type": "link", "url": f"/d/{uid}?${{__url_time_range}}"
            "&${__all_variables}", "keepTime": True, "includeVars": True}


# -- fleet ---------------------------------------------------------------------------------

# Connector states in which an installed connector cannot protect its host.
SILENT = "daemon_not_running|not_answering"


def fleet(config: Config = DEFAULT) -> dict:
    """Fleet overview. The totals (stats, the two time series, connector versions) read
    `job:` rules, which have no `instance` label: they stay job-wide and say so (JOB_WIDE);
    "Hosts per active fault" also takes its titles from every host's cisco_amp_fault_info
    (the same everywhere), so a Host selection of down hosts does not blank it. The
    per-host panels (tables, top lists) select instance=~"$instance"."""
    L = Layout()
    L.row("Fleet")
    for title, expr, steps, desc in (
        ("Hosts scraped", f"sum(job:up:sum{{{J}}})", _steps((None, "blue")),
         "amp-exporter targets that answered their last scrape."),
        ("Daemon down or silent", f"sum(job:cisco_amp_connector_state:sum{{{J},"
         f'state=~"{SILENT}"}})', OK_BAD,
         "Installed connectors whose daemon is not running or does not answer ampcli: "
         "unprotected hosts, with no fault to show."),
        ("Hosts with active faults", f"sum(job:cisco_amp_hosts_faulty:sum{{{J}}})", OK_BAD,
         "Hosts whose connector reports at least one fault."),
        ("Critical hosts", f'sum(job:cisco_amp_hosts_by_severity:sum{{{J},severity="critical"}})',
         OK_BAD, "Hosts whose worst fault is critical (connector severity 3)."),
        ("Disconnected", f"sum(job:cisco_amp_connector_disconnected:sum{{{J}}})", OK_BAD,
         "Connectors not connected to the Cisco cloud."),
        ("Degraded", f"sum(job:cisco_amp_connector_degraded:sum{{{J}}})", OK_BAD,
         "Connectors that report a degraded mode."),
        ("Not installed", f"sum(job:cisco_amp_connector_not_installed:sum{{{J}}})", OK_BAD,
         "Scraped hosts with no connector installed."),
    ):
        L.add(panel("stat", title, [target(expr, instant=True)], desc + JOB_WIDE,
                    thresholds=steps, options=STAT), 3, 4)
    L.add(panel("timeseries", "Hosts per active fault",
                [target(f"job:cisco_amp_fault_active:sum{{{J}}} * on (fault_id) group_left "
                        f"(title) max by (fault_id, title) (cisco_amp_fault_info{{{J}}})",
                        "{{fault_id}} {{title}}")],
                "How many hosts report each catalog fault, over time." + JOB_WIDE,
                options={"legend": {"displayMode": "table", "placement": "right"}}), 16, 8)
    L.add(panel("timeseries", "Hosts by worst fault severity",
                [target(f"sum by (severity) (job:cisco_amp_hosts_by_severity:sum{{{J}}})",
                        "{{severity}}")],
                "Each host counted once, at the severity of its worst fault." + JOB_WIDE),
          8, 8)
    L.row("Hosts")
    L.add(host_link(panel("table", "Active faults by host",
                [target(f"(cisco_amp_fault_active{{{JI}}} == 1) * on (job, instance, fault_id) "
                        f"group_left (title) cisco_amp_fault_info{{{JI}}}", table=True,
                        ref="A"),
                 target(f"cisco_amp_fault_severity{{{JI}}} > 0", table=True, ref="B")],
                "One row per host and fault, with the catalog's title and the connector's "
                "severity.",
                mappings=SEVERITY_TEXT,
                transformations=_table_hide("Time", "__name__", "job", "Value #A",
                                            merge=True))), 16, 9)
    L.add(panel("bargauge", "Connector versions",
                [target(f"sum by (version) (job:cisco_amp_connector_version:count{{{J}}})",
                        "{{version}}", instant=True)],
                "Hosts per connector version." + JOB_WIDE, options={"displayMode": "basic"}),
          8, 9)
    L.add(host_link(panel("table", "Unknown faults",
                [target(f"cisco_amp_fault_active{{{JI},fault_id!~\"{_known()}\"}} == 1",
                        table=True)],
                "Fault IDs the connector reports that amp-exporter's catalog does not know.",
                transformations=_table_hide("Time", "__name__", "Value"))), 8, 6)
    L.add(host_link(panel("table", "Connectors that cannot protect",
                [target(f'cisco_amp_connector_state{{{JI},state!~"answering|not_installed"}} '
                        "== 1", table=True)],
                "Hosts whose connector daemon is not running (daemon_not_running), does not "
                "answer ampcli (not_answering), or cannot be asked by amp-exporter (unknown).",
                transformations=_table_hide("Time", "__name__", "Value"))), 8, 6)
    L.add(host_link(panel("table", "Disconnected hosts",
                [target(f"cisco_amp_connector_connected{{{JI}}} == 0", table=True)],
                "Connectors not connected to the Cisco cloud.",
                transformations=_table_hide("Time", "__name__", "Value"))), 8, 6)
    L.add(host_link(panel("table", "Failing collectors",
                [target(f"amp_exporter_scrape_collector_success{{{JI}}} == 0", table=True)],
                "amp-exporter collectors that could not run: their checks are blind.",
                transformations=_table_hide("Time", "__name__", "Value"))), 8, 6)
    L.add(fault_runbooks(config), 8, 9)
    L.row("Events")
    L.add(panel("bargauge", "Top event pressure",
                [target(f"topk(10, cisco_amp_event_pressure_ratio{{{JI}}})", "{{instance}}",
                        instant=True)],
                "Event rate against the configured capacity (1 = at capacity); fault 18 "
                "follows when the connector cannot keep up.", unit="percentunit",
                thresholds=_steps((None, "green"), (config.event_pressure_ratio, "orange"),
                                  (1, "red")),
                options={"displayMode": "gradient", "orientation": "horizontal"}), 12, 8)
    L.add(panel("timeseries", "Busiest hosts by event rate",
                [target(f"topk(10, instance:cisco_amp_host_events:rate5m{{{JI}}})",
                        "{{instance}}")],
                "System events per second the connector has to absorb.", unit="ops"), 12, 8)
    return _dashboard(FLEET_DASHBOARD_UID, "Cisco Secure Endpoint / fleet",
                      "Health of the Cisco Secure Endpoint Linux connector across the fleet "
                      "(amp-exporter).", L, config,
                      [_link("Host detail", HOST_DASHBOARD_UID)])


def _known() -> str:
    from amp_exporter.monitoring.alerts import known_fault_regex
    return known_fault_regex()


# -- one host ------------------------------------------------------------------------------

def host(config: Config = DEFAULT) -> dict:
    L = Layout()
    L.row("Status")
    for title, expr, steps, mappings, desc in (
        ("Exporter up", f"up{{{JI}}}", BAD_OK, YES_NO,
         "Whether Prometheus could scrape amp-exporter on the host at its last try."),
        ("Connector installed", f"cisco_amp_connector_installed{{{JI}}}", BAD_OK, YES_NO,
         "Whether the Cisco Secure Endpoint connector is installed (its ampdaemon exists)."),
        ("Connected", f"cisco_amp_connector_connected{{{JI}}}", BAD_OK, YES_NO,
         "Whether the connector is connected to the Cisco cloud (policy, definitions, "
         "events)."),
        ("Degraded", f"cisco_amp_connector_degraded{{{JI}}}", OK_BAD, YES_NO,
         "Whether the connector reports a degraded mode: the faults below say why."),
        ("Worst fault severity", f"instance:cisco_amp_fault_severity:max{{{JI}}}",
         _steps((None, "green"), (1, "yellow"), (2, "orange"), (3, "red")), SEVERITY_TEXT,
         "The connector's severity of the worst fault it reports (none, minor, major, "
         "critical)."),
    ):
        L.add(panel("stat", title, [target(expr, "{{instance}}", instant=True)], desc,
                    thresholds=steps, mappings=mappings, options=STAT), 4, 4)
    L.add(panel("stat", "Connector state",
                [target(f"cisco_amp_connector_state{{{JI}}} == 1", "{{state}}", instant=True)],
                "answering: its faults below are its own report; daemon_not_running or "
                "not_answering: the host is unprotected and no fault can be seen; "
                "not_installed; unknown: amp-exporter may not run ampcli.",
                options={**STAT, "textMode": "name", "colorMode": "none"}), 4, 4)
    L.add(panel("stat", "Monitoring",
                [target(f"cisco_amp_monitoring_machinery{{{JI}}} == 1",
                        "{{subsystem}}: {{machinery}}", instant=True),
                 target(f"cisco_amp_monitoring_ebpf{{{JI}}} == 1", "eBPF: {{mode}}",
                        instant=True, ref="B")],
                "How the connector watches each subsystem (kernel modules or eBPF), and how "
                "it builds its eBPF programs: core (BTF), headers, or none "
                "(docs/monitoring-model.md).",
                options={**STAT, "textMode": "name", "colorMode": "none"}), 4, 4)
    L.add(panel("table", "Connector",
                [target(f"cisco_amp_connector_info{{{JI}}}", table=True)],
                "What the connector reports about itself.",
                transformations=_table_hide("Time", "__name__", "job", "Value")), 24, 4)
    L.row("Faults")
    L.add(panel("table", "Faults",
                [target(f"cisco_amp_fault_active{{{JI}}} * on (job, instance, fault_id) "
                        f"group_left (title) cisco_amp_fault_info{{{JI}}}", table=True,
                        ref="A"),
                 target(f"cisco_amp_fault_severity{{{JI}}}", table=True, ref="B")],
                "Every catalog fault (1 = reported by the connector) and the connector's "
                "severity.", mappings=SEVERITY_TEXT,
                transformations=_table_hide("Time", "__name__", "job", merge=True)), 12, 10)
    L.add(panel("table", "Causes found",
                [target(f"cisco_amp_fault_cause{{{JI}}} == 1", table=True)],
                "Root causes the exporter found on its own (docs/faults.md explains each).",
                transformations=_table_hide("Time", "__name__", "job", "Value")), 12, 10)
    L.add(panel("timeseries", "Faults over time",
                [target(f"cisco_amp_fault_severity{{{JI}}} > 0", "fault {{fault_id}}")],
                "Connector severity of each raised fault (1 minor ... 3 critical).",
                options={"legend": {"displayMode": "list", "placement": "bottom"}}), 16, 9)
    L.add(fault_runbooks(config), 8, 9)
    L.row("Processes")
    L.add(panel("timeseries", "Processes up",
                [target(f"cisco_amp_process_up{{{JI}}}", "{{process}}")],
                "1 while each connector process runs (ampdaemon, ampscansvc, ...)."), 8, 7)
    L.add(panel("timeseries", "Restarts",
                [target(f"increase(cisco_amp_process_restarts_total{{{JI}}}[$__rate_interval])",
                        "{{process}}", "A"),
                 target(f"increase(cisco_amp_scan_service_restarts_total{{{JI}}}"
                        "[$__rate_interval])", "scan service", "B")],
                "Restarts amp-exporter observed (fault 6 follows frequent scan service "
                "restarts)."), 8, 7)
    L.add(panel("timeseries", "CPU",
                [target(f"sum by (process) (rate(cisco_amp_process_cpu_seconds_total{{{JI}}}"
                        "[$__rate_interval]))", "{{process}}")],
                "CPU each connector process uses (1 = one core).", unit="percentunit"), 8, 7)
    L.add(panel("timeseries", "Resident memory",
                [target(f"cisco_amp_process_resident_memory_bytes{{{JI}}}", "{{process}}")],
                "Resident memory of each connector process.", unit="bytes"), 8, 7)
    L.add(panel("timeseries", "TCP connections",
                [target(f"sum by (process, state) (cisco_amp_tcp_connections{{{JI}}})",
                        "{{process}} {{state}}")],
                "TCP connections of each connector process, by state (the cloud connection "
                "among them)."), 8, 7)
    L.add(panel("stat", "Definitions age",
                [target(f"time() - max by (database) "
                        f"(cisco_amp_definitions_updated_timestamp_seconds{{{JI}}})",
                        "{{database}}", instant=True)],
                "Time since each definitions database was updated (the build time of its "
                "ClamAV header, else the file's modification time): daily should be hours "
                "old, main may be months old.",
                unit="s", options={**STAT, "colorMode": "none"}), 8, 7)
    L.row("Kernel and eBPF")
    L.add(panel("stat", "Kernel modules loaded",
                [target(f"cisco_amp_kernel_module_loaded{{{JI}}}", "{{module}}", instant=True)],
                "Only kernel-module hosts need them.", mappings=YES_NO,
                options={**STAT, "colorMode": "none"}), 12, 5)
    L.add(panel("timeseries", "BPF programs held",
                [target(f"cisco_amp_bpf_programs{{{JI}}}", "{{process}}")],
                "eBPF programs each connector process holds loaded (eBPF hosts only)."), 12, 5)
    L.row("Events")
    L.add(panel("timeseries", "Event rate by family",
                [target(f"sum by (event) (rate(cisco_amp_host_events_total{{{JI}}}"
                        "[$__rate_interval]))", "{{event}}")],
                "System events per second on the host, by family, that the connector "
                "watches.", unit="ops"), 8, 8)
    L.add(panel("timeseries", "Event pressure",
                [target(f"cisco_amp_event_pressure_ratio{{{JI}}}", "{{instance}}")],
                "Event rate against the configured capacity "
                f"(cisco_amp_event_capacity_per_second); the early warning is at "
                f"{config.event_pressure_ratio:.0%}.", unit="percentunit",
                thresholds=_steps((None, "green"), (config.event_pressure_ratio, "orange"),
                                  (1, "red"))), 8, 8)
    L.add(panel("bargauge", "Top commands by event rate",
                [target(f"topk(10, cisco_amp_process_event_rate{{{JI}}})", "{{command}}",
                        instant=True)],
                "Busiest commands over the last window (eBPF source only).", unit="ops",
                options={"displayMode": "basic", "orientation": "horizontal"}), 8, 8)
    L.row("amp-exporter")
    L.add(panel("table", "Collectors",
                [target(f"amp_exporter_scrape_collector_success{{{JI}}}", table=True,
                        ref="A"),
                 target(f"amp_exporter_scrape_collector_duration_seconds{{{JI}}}",
                        table=True, ref="B")],
                "1 = the collector's last run succeeded; how long it took.",
                transformations=_table_hide("Time", "__name__", "job", merge=True)), 12, 8)
    L.add(panel("timeseries", "Collector errors",
                [target(f"sum by (collector, reason) (increase("
                        f"amp_exporter_collector_errors_total{{{JI}}}[$__rate_interval]))",
                        "{{collector}} {{reason}}")],
                "Collector failures by collector and reason (timeout, permission, parse, "
                "...)."), 6, 8)
    L.add(panel("stat", "Event source",
                [target(f"amp_exporter_events_source{{{JI}}} == 1", "{{source}}",
                        instant=True),
                 target(f"amp_exporter_events_ebpf_unavailable{{{JI}}} == 1",
                        "eBPF off: {{reason}}", "B", instant=True)],
                "Where event counts come from; why eBPF is not used.",
                options={**STAT, "textMode": "name", "colorMode": "none"}), 6, 8)
    return _dashboard(HOST_DASHBOARD_UID, "Cisco Secure Endpoint / host",
                      "One host's Cisco Secure Endpoint connector in depth (amp-exporter).",
                      L, config, [_link("Fleet overview", FLEET_DASHBOARD_UID)])


def dashboards(config: Config = DEFAULT) -> dict[str, dict]:
    return {FLEET_FILE: narrow(fleet(config), config), HOST_FILE: narrow(host(config), config)}


def selector_extras(selector: str) -> tuple[Optional[str], list[str]]:
    """(the job a selector names with job="...", its other matchers)."""
    from amp_exporter.monitoring.alerts import check_selector
    check_selector(selector)
    parts = [p.strip() for p in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', selector)]
    job = next((m.group(1) for p in parts if (m := re.fullmatch(r'job\s*=\s*"(.*)"', p))),
               None)
    return job, [p for p in parts if not re.match(r"job\s*(=|!=|=~|!~)", p)]


def narrow(board: dict, config: Config) -> dict:
    """BOARD with the selector's other matchers (e.g. env="prod") beside every job=~"$job",
    and with config.cluster_label a `cluster` variable that every query selects; the
    default configuration leaves it as it is."""
    _, extras = selector_extras(config.selector)
    cluster = config.cluster_label
    if cluster:
        extras.append(f'{cluster}=~"$cluster"')
    if not extras:
        return board
    text = json.dumps(board)
    text = text.replace(json.dumps(J)[1:-1], json.dumps(",".join([J, *extras]))[1:-1])
    if cluster:
        matchers = json.dumps(",".join(extras))[1:-1]
        text = text.replace("label_values(amp_exporter_build_info, job)",
                            f"label_values(amp_exporter_build_info{{{matchers}}}, job)")
        text = text.replace("&var-job=${job}", "&var-cluster=${cluster}&var-job=${job}")
        text = re.sub(r"\b(by|on) \(job\b", rf"\1 (job, {cluster}", text)
    board = json.loads(text)
    if cluster:
        variable = _query_variable(
            "cluster", _capital(cluster), f"label_values(amp_exporter_build_info, {cluster})",
            include_all=True)
        variable["allValue"] = ".*"  # All: series without the label too
        board["templating"]["list"].insert(1, variable)
    return board


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- provisioning --------------------------------------------------------------------------

def provisioning() -> dict[str, dict]:
    """Grafana provisioning examples (YAML data): the dashboards and a Prometheus source."""
    return {
        "dashboards/provisioning/dashboards.yml": {
            "apiVersion": 1,
            "providers": [{
                "name": "amp-exporter", "folder": "Cisco Secure Endpoint", "type": "file",
                "disableDeletion": False, "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": "/var/lib/grafana/dashboards/amp-exporter",
                            "foldersFromFilesStructure": False},
            }],
        },
        "dashboards/provisioning/datasources.yml": {
            "apiVersion": 1,
            "datasources": [{
                "name": "Prometheus", "uid": "prometheus", "type": "prometheus",
                "access": "proxy", "url": "http://localhost:9090", "isDefault": True,
                "jsonData": {"timeInterval": "15s"},
            }],
        },
    }
