"""A small fleet of real `amp-exporter serve` processes scraped by the real `prometheus`
binary on loopback, with our alert and recording rules loaded: every dashboard query
evaluates and returns data, the instance variable narrows what it should, and the
expected alerts are pending or firing."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import EBPF_REQUIRED, REPO, LoopbackDaemon, ebpf_blocker, free_port, have
from test_http import Server

from amp_exporter.monitoring import alerts, dashboards
from amp_exporter.monitoring.config import DEFAULT

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not have("prometheus"), reason="prometheus binary missing")]

HOSTS = ("healthy-ebpf-btf", "fault-11-kernel-headers", "fault-18-overloaded", "multi-fault",
         "no-connector")
DISCONNECTED = "disconnected-kmod"  # a copy of healthy-kmod whose ampcli says Disconnected
DOWN = "down"  # a target where nothing listens
# healthy-ebpf-btf again, but its ampcli prints binary garbage: the connector collector
# fails (reason parse) while the others succeed.
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
EXPECTED_ALERTS = {
    "healthy-ebpf-btf": set(),
    "fault-11-kernel-headers": {"CiscoAmpRequiredKernelLevelPackagesMissing",
                                "CiscoAmpConnectorDegraded"},
    "fault-18-overloaded": {"CiscoAmpConnectorEventMonitoringOverloaded",
                            "CiscoAmpConnectorDegraded"},
    "multi-fault": {"CiscoAmpScanServiceFailedToStart", "CiscoAmpUnknownFaultReported",
                    "CiscoAmpConnectorDegraded"},
    "no-connector": {"CiscoAmpConnectorNotInstalled"},
    DISCONNECTED: {"CiscoAmpConnectorDisconnected"},
    FAILING: {"CiscoAmpCollectorFailing"},
    DOWN: {"CiscoAmpExporterDown"},
    **({LIVE: set()} if EBPF_BLOCKER is None else {}),
}


class Prometheus(LoopbackDaemon):
    def __init__(self, tmp: Path, targets: list[str]) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "1s"},
            "rule_files": [str(REPO / alerts.RULES_FILE), str(REPO / alerts.RECORDING_FILE)],
            "scrape_configs": [{"job_name": DEFAULT.job,
                                "static_configs": [{"targets": targets}]}],
        }
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

    def wait(self, what: str, predicate, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited; see its log"
            try:
                if predicate():
                    return
            except (OSError, AssertionError, IndexError, KeyError) as exc:  # not yet
                last = exc
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what} ({last})")


@pytest.fixture
def fleet(hosts, host_copy, tmp_path):
    """{host name: instance address}, and a Prometheus that scrapes them."""
    assert not (EBPF_BLOCKER and EBPF_REQUIRED), f"eBPF cannot run here: {EBPF_BLOCKER}"
    flags = ["--events.window", "1"]  # event pressure after a second, not fifteen
    roots = {name: hosts[name] for name in HOSTS}
    root = host_copy("healthy-kmod")
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    ampcli.write_text(ampcli.read_text().replace("Status: Connected", "Status: Disconnected"))
    roots[DISCONNECTED] = root
    garbage = tmp_path / "ampcli-garbage"
    garbage.write_bytes(b"#!/bin/sh\ncat " + str(tmp_path / "garbage").encode() + b"\n")
    garbage.chmod(0o755)
    (tmp_path / "garbage").write_bytes(GARBAGE)
    extra = {FAILING: ("--ampcli.path", str(garbage))}
    roots[FAILING] = hosts["healthy-ebpf-btf"]
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
        prometheus = Prometheus(tmp_path, sorted(instances.values()))
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
    failing = [r["metric"] for r in results["amp-fleet.json", "Failing collectors", "A"]]
    assert [(m["instance"], m["collector"]) for m in failing] == [
        (instances[FAILING], "connector")]

    # the Host variable narrows every query that uses it to the chosen hosts, and only
    # those; a selection of no scraped host leaves them all empty (aggregations included)
    chosen = [instances["multi-fault"], instances[FAILING]]
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

    # (b) the expected alerts, pending or firing, and none on the healthy host
    by_instance = {address: name for name, address in instances.items()}
    got: dict[str, set] = {name: set() for name in instances}
    descriptions = {}
    for alert in prom.get("/api/v1/alerts")["data"]["alerts"]:
        assert alert["state"] in ("pending", "firing")
        name = by_instance[alert["labels"]["instance"]]
        got[name].add(alert["labels"]["alertname"])
        descriptions[name, alert["labels"]["alertname"]] = alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith(".md")
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
    assert time.monotonic() - started < 60
