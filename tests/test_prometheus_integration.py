"""A small fleet of real `amp-exporter serve` processes scraped by the real `prometheus`
binary on loopback, with our alert and recording rules loaded: every dashboard query
evaluates and returns data, the instance variable narrows what it should, and the
expected alerts are pending or firing, each with its severity; then how long a daemon that
dies on a healthy host takes to show as a pending alert."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import pytest
import yaml
from conftest import (
    EBPF_REQUIRED,
    REPO,
    LoopbackDaemon,
    builder,
    copy_host,
    ebpf_blocker,
    free_port,
    fresh_definitions,
    have,
)
from test_http import Server

from amp_exporter.monitoring import alerts, dashboards
from amp_exporter.monitoring.config import DEFAULT

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not have("prometheus"), reason="prometheus binary missing")]

HEALTHY = ("healthy-ebpf-btf", "healthy-ebpf-headers", "healthy-kmod")
HOSTS = (*HEALTHY, "fault-11-kernel-headers", "fault-18-overloaded", "multi-fault",
         "no-connector", "daemon-dead", "ampcli-silent")
# ampcli-silent's ampcli connects, then never answers: --ampcli.timeout 1 ends each run, so
# its scrapes take a second and more, and Prometheus scrapes it every SLOW_SCRAPE with as
# long a timeout (deploy/prometheus: scrape_timeout above --ampcli.timeout), or its scrapes
# would fail and it would look down instead of silent.
SILENT = "ampcli-silent"
SILENT_FLAGS = ("--ampcli.timeout", "1")
SLOW_SCRAPE = "2s"
DISCONNECTED = "disconnected-kmod"  # a copy of healthy-kmod whose ampcli says Disconnected
DOWN = "down"  # a target where nothing listens
# The example hosts' daily.cvd was built on a fixed day (examples/build_hosts.py), long ago
# by now: the fleet gets copies whose daily.cvd header says it was built at the start of
# the test, but for STALE, a copy of healthy-kmod left as built (older than the critical age).
STALE = "stale-definitions"
STALE_ALERT = "CiscoAmpDefinitionsStale"
# healthy-ebpf-btf again, but its ampcli prints binary garbage: the connector collector
# fails (reason parse) while the others succeed, and the connector is not answering.
FAILING = "collector-failing"
GARBAGE = b"\x00\x01\xff\xfeMZ\x90\x00\x1b[2J\r\n\xc3\x28\xa0\xa1\n"
# This machine's own kernel with the eBPF event source and only the events collector:
# the one way to get cisco_amp_process_event_rate (per-command rates come from the eBPF
# program's command table; a host tree has no kernel of ours, so its events collector
# uses proc/stat, which counts forks and knows no commands). Only where eBPF works.
LIVE = "live-ebpf"
EBPF_BLOCKER = ebpf_blocker()
LIVE_FLAGS = ("--collector.disable-defaults", "--collector.events", "--events.source", "ebpf",
              "--events.capacity", "1e9")  # a busy test machine must not raise pressure
# Template variables as Grafana would substitute them for this fleet ($instance: All).
VARIABLES = {"$job": DEFAULT.job, "$instance": ".+", "$__rate_interval": "1m",
             "$__interval": "15s", "$__range": "1h"}
# Panels that legitimately return nothing on this fleet, and why.
NO_DATA = {} if EBPF_BLOCKER is None else {
    ("amp-host.json", "Top commands by event rate"):
        "cisco_amp_process_event_rate needs the eBPF event source, which this machine "
        f"cannot run ({EBPF_BLOCKER}); the example host trees count events from proc/stat",
}
# {host: {alert: its (worst) severity label}}. Fault alerts take the connector's severity
# (Critical 3 -> critical, Major 2 -> warning), one rule per tier: the tiers up to it fire
# together (Alertmanager mutes the lower ones); a dead or silent connector pages (critical).
EXPECTED_ALERTS = {
    **{name: {} for name in HEALTHY},
    "fault-11-kernel-headers": {"CiscoAmpRequiredKernelLevelPackagesMissing": "critical",
                                "CiscoAmpConnectorDegraded": "warning"},
    "fault-18-overloaded": {"CiscoAmpConnectorEventMonitoringOverloaded": "critical",
                            "CiscoAmpConnectorDegraded": "warning"},
    "multi-fault": {"CiscoAmpScanServiceFailedToStart": "critical",
                    "CiscoAmpUnknownFaultReported": "warning",
                    "CiscoAmpConnectorDegraded": "warning"},
    "no-connector": {"CiscoAmpConnectorNotInstalled": "warning"},
    "daemon-dead": {"CiscoAmpConnectorDaemonNotRunning": "critical"},
    SILENT: {"CiscoAmpConnectorNotAnswering": "critical", "CiscoAmpCollectorFailing": "warning"},
    DISCONNECTED: {"CiscoAmpConnectorDisconnected": "warning"},
    FAILING: {"CiscoAmpCollectorFailing": "warning", "CiscoAmpConnectorNotAnswering": "critical"},
    DOWN: {"CiscoAmpExporterDown": "warning"},
    STALE: {STALE_ALERT: "critical"},
    **({LIVE: {}} if EBPF_BLOCKER is None else {}),
}
SHIPPED_RULES = (REPO / alerts.RULES_FILE, REPO / alerts.RECORDING_FILE)
RANK = ["info", "warning", "critical"]


class Prometheus(LoopbackDaemon):
    """prometheus on loopback scraping TARGETS every second and SLOW targets every
    SLOW_SCRAPE (a target whose scrape takes a second), evaluating RULE_FILES every
    second, and sending alerts to ALERTMANAGER (host:port) when given."""

    def __init__(self, tmp: Path, targets: Sequence[str], slow: Sequence[str] = (),
                 rule_files: Sequence[Path] = SHIPPED_RULES,
                 alertmanager: Optional[str] = None) -> None:
        self.port = free_port()
        groups: list[dict] = [{"targets": list(targets)}]
        if slow:  # per-target interval and timeout, as target labels (Prometheus 2.27+)
            groups.append({"targets": list(slow),
                           "labels": {"__scrape_interval__": SLOW_SCRAPE,
                                      "__scrape_timeout__": SLOW_SCRAPE}})
        config: dict = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "1s"},
            "rule_files": [str(f) for f in rule_files],
            "scrape_configs": [{"job_name": DEFAULT.job, "static_configs": groups}],
        }
        if alertmanager:
            config["alerting"] = {"alertmanagers": [{"static_configs": [
                {"targets": [alertmanager]}]}]}
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        super().__init__(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            tmp / "prometheus.log", self.port)

    def get(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())

    def query(self, expr: str) -> list:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def wait(self, what: str, predicate, timeout: float = 30, step: float = 0.3) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited: " + self.read_log()
            try:
                if predicate():
                    return
            except (OSError, AssertionError, IndexError, KeyError) as exc:  # not yet
                last = exc
            time.sleep(step)
        raise AssertionError(f"timed out waiting for {what} ({last})")


AMPCLI = "opt/cisco/amp/bin/ampcli"




def replace_ampcli(root: Path, script: str) -> None:
    """Swap ROOT's ampcli for SCRIPT in one rename: a scrape runs the old one or the new."""
    new = root / (AMPCLI + ".new")
    new.write_text(script)
    new.chmod(0o755)
    os.replace(new, root / AMPCLI)


def kill_daemon(root: Path, name: str) -> float:
    """Make ROOT, a copy of the example host NAME, look as a host whose daemon died: no
    ampdaemon or ampscansvc in proc (the scan service goes with the daemon), and the
    daemon-dead host's ampcli, which prints 'Trying to connect...' and exits 1. The
    processes go first, as they do on a real host. Returns when it began (monotonic)."""
    pids = (builder.PID_DAEMON, builder.HOSTS[name].scan_pid)
    assert all(pids) and all((root / "proc" / str(p)).is_dir() for p in pids), pids
    began = time.monotonic()
    for pid in pids:
        shutil.rmtree(root / "proc" / str(pid))
    replace_ampcli(root, builder.ampcli(builder.HOSTS["daemon-dead"]))
    return began


@pytest.fixture
def fleet(hosts, host_copy, tmp_path):
    """{host name: instance address}, and a Prometheus that scrapes them."""
    assert not (EBPF_BLOCKER and EBPF_REQUIRED), f"eBPF cannot run here: {EBPF_BLOCKER}"
    flags = ["--events.window", "1"]  # event pressure after a second, not fifteen
    roots = {name: fresh_definitions(copy_host(hosts[name], tmp_path / "fleet" / name))
             for name in HOSTS}
    roots[STALE] = copy_host(hosts["healthy-kmod"], tmp_path / "fleet" / STALE)
    root = fresh_definitions(host_copy("healthy-kmod"))
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    ampcli.write_text(ampcli.read_text().replace("Status: Connected", "Status: Disconnected"))
    roots[DISCONNECTED] = root
    garbage = tmp_path / "ampcli-garbage"
    garbage.write_bytes(b"#!/bin/sh\ncat " + str(tmp_path / "garbage").encode() + b"\n")
    garbage.chmod(0o755)
    (tmp_path / "garbage").write_bytes(GARBAGE)
    extra = {FAILING: ("--ampcli.path", str(garbage)), SILENT: SILENT_FLAGS}
    roots[FAILING] = roots["healthy-ebpf-btf"]
    if EBPF_BLOCKER is None:
        roots[LIVE], extra[LIVE] = Path("/"), LIVE_FLAGS
    servers: list[Server] = []
    prometheus = None
    try:
        instances = {}
        for name, path in roots.items():
            servers.append(Server(path, *flags, *extra.get(name, ())))
            instances[name] = f"127.0.0.1:{servers[-1].port}"
        instances[DOWN] = f"127.0.0.1:{free_port()}"
        prometheus = Prometheus(tmp_path, sorted(a for n, a in instances.items() if n != SILENT),
                                slow=[instances[SILENT]])
        yield instances, prometheus
    finally:
        for s in servers:  # all shut down at once: each takes a moment, the eBPF one seconds
            s.proc.terminate()
        if prometheus is not None:
            prometheus.stop()
        for s in servers:
            s.stop()


def substitute(expr: str, **override: str) -> str:
    """EXPR with Grafana's template variables replaced (OVERRIDE: name without $: value)."""
    values = {**VARIABLES, **{f"${k}": v for k, v in override.items()}}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    assert "$" not in expr, expr
    return expr


def grafana_multi(values: list[str]) -> str:
    """A multi-value selection as Grafana puts it into a Prometheus regex matcher: each value
    regex-escaped, joined by |, in a group, in a PromQL string (backslashes doubled)."""
    return "(" + "|".join(re.escape(v) for v in values).replace("\\", "\\\\") + ")"


def test_dashboards_and_alerts_against_a_real_prometheus(fleet):
    started = time.monotonic()
    instances, prom = fleet
    live = len(instances) - 1
    prom.wait("prometheus ready", lambda: prom.get("/api/v1/status/buildinfo"))
    prom.wait("every live target up",
              lambda: prom.query(f'sum(up{{job="{DEFAULT.job}"}})')[0]["value"][1] == str(live))
    prom.wait("rates over two scrapes",
              lambda: len(prom.query("instance:cisco_amp_host_events:rate5m")) == live)
    prom.wait("event pressure", lambda: len(prom.query("cisco_amp_event_pressure_ratio")) > 0,
              timeout=15)
    if LIVE in instances:
        prom.wait("per-command event rates (eBPF)",
                  lambda: prom.query("cisco_amp_process_event_rate"), timeout=30)
    prom.wait("a few rule evaluations", lambda: all(
        g["lastEvaluation"] > "2" for g in prom.get("/api/v1/rules")["data"]["groups"]))
    time.sleep(2)

    # (a) every dashboard query evaluates and returns data
    empty, checked, panels = [], 0, set()
    results: dict[tuple, list] = {}
    for path in (dashboards.FLEET_FILE, dashboards.HOST_FILE):
        board = json.loads((REPO / path).read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                result = prom.query(substitute(target["expr"]))  # asserts no error
                checked += 1
                key = (Path(path).name, panel["title"])
                panels.add(key)
                results[(*key, target["refId"])] = result
                if not result and key not in NO_DATA:
                    empty.append(f"{key} {target['refId']}: {target['expr']}")
                if result and key in NO_DATA:
                    empty.append(f"{key} has data now: take it off NO_DATA")
        variables = {}
        for variable in board["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.*), (\w+)\)",
                                 variable.get("definition", ""))
            if match:
                variables[variable["name"]] = set(prom.get(
                    f"/api/v1/label/{match.group(2)}/values",
                    **{"match[]": substitute(match.group(1))})["data"])
        assert variables == {"job": {DEFAULT.job},
                             "instance": {a for n, a in instances.items() if n != DOWN}}, path
    assert not empty, "\n".join(empty)
    assert len(panels) >= 39 and checked >= 44, (len(panels), checked)
    # the dashboards of --cluster-label cluster: on this fleet (no cluster label) and at
    # All (.*), every query runs and has data wherever the default dashboards' has
    clustered = dashboards.dashboards(dataclasses.replace(DEFAULT, cluster_label="cluster"))
    for path, board in clustered.items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                assert 'cluster=~"$cluster"' in target["expr"], target["expr"]
                result = prom.query(substitute(target["expr"], cluster=".*"))
                key = (Path(path).name, panel["title"], target["refId"])
                assert bool(result) == bool(results[key]), key
    failing = [r["metric"] for r in results["amp-fleet.json", "Failing collectors", "A"]]
    assert sorted((m["instance"], m["collector"]) for m in failing) == sorted(
        [(instances[FAILING], "connector"), (instances[SILENT], "connector")])

    # the Host variable narrows every query that uses it to the chosen hosts, and only
    # those; a selection of no scraped host leaves them all empty (aggregations included).
    # daemon-dead serves no fault series at all: it must still be narrowed to, not lost.
    chosen = [instances["multi-fault"], instances[FAILING], instances["daemon-dead"]]
    seen: set[str] = set()
    narrowed = 0
    for path in (dashboards.FLEET_FILE, dashboards.HOST_FILE):
        for panel in json.loads((REPO / path).read_text())["panels"]:
            for target in panel.get("targets", []):
                if "$instance" not in target["expr"]:
                    continue  # fleet totals over job: rules (see dashboards.fleet)
                narrowed += 1
                expr = substitute(target["expr"], instance=grafana_multi(chosen))
                got = {r["metric"]["instance"] for r in prom.query(expr)
                       if "instance" in r["metric"]}
                assert got <= set(chosen), (path, panel["title"], got)
                seen |= got
                nobody = substitute(target["expr"], instance=grafana_multi(["none.invalid:1"]))
                assert prom.query(nobody) == [], (path, panel["title"])
    assert seen == set(chosen)
    assert narrowed >= 35, narrowed

    # (b) the expected alerts, pending or firing, each with its severity; nothing above
    # info on a healthy host
    by_instance = {address: name for name, address in instances.items()}
    got: dict[str, dict[str, str]] = {name: {} for name in instances}
    tiers: dict[tuple[str, str], list[str]] = {}
    descriptions = {}
    for alert in prom.get("/api/v1/alerts")["data"]["alerts"]:
        assert alert["state"] in ("pending", "firing")
        name, alertname = by_instance[alert["labels"]["instance"]], alert["labels"]["alertname"]
        severity = alert["labels"]["severity"]
        assert severity not in tiers.get((name, alertname), []), f"two alike on {name}: {alert}"
        tiers.setdefault((name, alertname), []).append(severity)
        got[name][alertname] = max(tiers[name, alertname], key=RANK.index)
        descriptions[name, alertname] = alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith(".md")
    for (name, alertname), seen in tiers.items():  # a tier never fires without those below
        worst = RANK.index(got[name][alertname])
        if alerts.is_tiered(alertname):
            expected = RANK[:worst + 1]
        elif alertname == STALE_ALERT:  # the warning age is passed before the critical one
            expected = RANK[1:worst + 1]
        else:
            expected = RANK[worst:worst + 1]
        assert sorted(seen, key=RANK.index) == expected, (name, alertname, seen)
    healthy = [n for n in (*HEALTHY, LIVE) if n in instances]
    assert len(healthy) == len(HEALTHY) + (EBPF_BLOCKER is None)
    loud = {(n, a, s) for n in healthy for a, s in got[n].items() if s != "info"}
    assert not loud, f"alerts above info on healthy hosts: {sorted(loud)}"
    assert got == EXPECTED_ALERTS
    assert descriptions["fault-11-kernel-headers",
                        "CiscoAmpRequiredKernelLevelPackagesMissing"].endswith(
        "Causes the exporter found: kernel_headers_missing.")
    assert descriptions["multi-fault", "CiscoAmpScanServiceFailedToStart"].endswith(
        "Causes the exporter found: scan_service_not_running.")
    assert "fault 23 (severity 2 of 3)" in descriptions["multi-fault",
                                                        "CiscoAmpUnknownFaultReported"]
    assert descriptions["multi-fault", "CiscoAmpConnectorDegraded"].endswith(
        "Faults it reports: 23, 7.")
    failing_text = descriptions[FAILING, "CiscoAmpCollectorFailing"]
    assert failing_text.startswith("The connector collector of amp-exporter on " +
                                   instances[FAILING]), failing_text
    assert failing_text.endswith("Reasons: parse."), failing_text
    assert descriptions[SILENT, "CiscoAmpCollectorFailing"].endswith("Reasons: timeout.")
    assert descriptions["daemon-dead", "CiscoAmpConnectorDaemonNotRunning"].startswith(
        f"On {instances['daemon-dead']}, for {DEFAULT.daemon_not_running_for}: ")
    assert time.monotonic() - started < 60


def test_time_from_daemon_death_to_the_alert(host_copy, tmp_path):
    """A healthy host whose daemon dies shows as a pending page (the shipped rules wait
    3 minutes before it fires) within a few scrapes."""
    root = fresh_definitions(host_copy("healthy-ebpf-btf"))
    # --ampcli.cache 0: every scrape asks ampcli, so the figure is the scrape and rule
    # intervals' and the exporter's own. With the default (5 s) a status cached just before
    # the death would keep the host "answering" for up to 5 s more.
    server = Server(root, "--ampcli.cache", "0")
    prom = None
    try:
        instance = f"127.0.0.1:{server.port}"
        prom = Prometheus(tmp_path, [instance])
        prom.wait("the host scraped healthy", lambda: prom.query(
            f'cisco_amp_connector_state{{instance="{instance}",state="answering"}} == 1'))
        page = ('ALERTS{alertname="CiscoAmpConnectorDaemonNotRunning",alertstate="pending",'
                f'severity="critical",instance="{instance}"}}')
        assert prom.query(page) == []
        assert prom.query(f'ALERTS{{instance="{instance}"}}') == []  # healthy: nothing at all

        died = kill_daemon(root, "healthy-ebpf-btf")
        prom.wait("the pending page", lambda: prom.query(page), timeout=30, step=0.05)
        seconds = time.monotonic() - died
        figure = f"daemon death -> pending CiscoAmpConnectorDaemonNotRunning: {seconds:.2f} s"
        print("\n" + figure)
        assert seconds < 15, figure
        assert prom.query(f'cisco_amp_connector_state{{instance="{instance}",'
                          'state="daemon_not_running"} == 1'), figure
    finally:
        if prom is not None:
            prom.stop()
        server.stop()
