"""Dashboard JSON structure (Grafana itself cannot run here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import REPO

from amp_exporter.catalog import FAULTS
from amp_exporter.monitoring import alerts, dashboards
from amp_exporter.monitoring.config import FLEET_DASHBOARD_UID, HOST_DASHBOARD_UID

BOARDS = {dashboards.FLEET_FILE: FLEET_DASHBOARD_UID, dashboards.HOST_FILE: HOST_DASHBOARD_UID}
KNOWN_METRICS = re.compile(r"\b(cisco_amp_\w+|amp_exporter_\w+|up|(job|instance):\w+:\w+)\b")


@pytest.fixture(params=sorted(BOARDS))
def board(request):
    return request.param, json.loads((REPO / request.param).read_text())


def test_uid_title_schema_and_variables(board):
    path, data = board
    assert data["uid"] == BOARDS[path]
    assert isinstance(data["schemaVersion"], int) and data["schemaVersion"] >= 36
    assert data["title"].startswith("Cisco Secure Endpoint / ")
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["type"] == "query"
    assert variables["job"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert list(variables) == ["datasource", "job", "instance"]
    instance = variables["instance"]
    assert instance["type"] == "query" and instance["multi"] and instance["includeAll"]
    assert instance["allValue"] == ".+" and instance["current"]["value"] == ["$__all"]
    assert instance["definition"] == instance["query"]["query"]
    assert re.fullmatch(r'label_values\(\w+\{job=~"\$job"\}, instance\)', instance["definition"])


def test_panels_ids_grid_and_targets(board):
    _, data = board
    panels = data["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert set(g) == {"h", "w", "x", "y"}
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0 and g["w"] > 0
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & occupied, f"panel {p['title']} overlaps another"
        occupied |= cells
        assert p["title"]
        if p["type"] == "row":
            continue
        if p["type"] == "text":  # the fault runbook links: no query
            assert p["options"]["mode"] == "markdown" and p["options"]["content"]
            continue
        assert p["type"] in ("stat", "timeseries", "table", "bargauge")
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["expr"] and t["refId"]
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert 'job=~"$job"' in t["expr"], t["expr"]
            assert KNOWN_METRICS.search(t["expr"])


def test_host_dashboard_selects_the_instance():
    data = dashboards.host()
    for p in data["panels"]:
        for t in p.get("targets", []):
            assert 'instance=~"$instance"' in t["expr"], t["expr"]


SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\{([^}]*)\}")


def test_fleet_dashboard_selects_the_instance_except_on_job_rules():
    """A fleet query that reads a job: recording rule cannot select an instance (the rule
    has summed the hosts away) and its panel says it is job-wide; every other selector has
    instance=~"$instance"."""
    narrowed, job_wide = set(), set()
    for p in dashboards.fleet()["panels"]:
        for t in p.get("targets", []):
            selectors = SELECTOR.findall(t["expr"])
            assert selectors, t["expr"]
            if any(name.startswith("job:") for name, _ in selectors):
                job_wide.add(p["title"])
                assert p["description"].endswith(dashboards.JOB_WIDE), p["title"]
                assert "$instance" not in t["expr"]
                continue
            narrowed.add(p["title"])
            assert dashboards.JOB_WIDE not in p["description"], p["title"]
            for name, matchers in selectors:
                assert 'instance=~"$instance"' in matchers.split(","), (p["title"], name)
    assert not narrowed & job_wide
    assert {"Active faults by host", "Unknown faults", "Disconnected hosts",
            "Failing collectors", "Top event pressure", "Busiest hosts by event rate",
            "Connectors that cannot protect"} == narrowed
    assert len(job_wide) == 10, job_wide


def test_fleet_dashboard_reads_recording_rules():
    from amp_exporter.monitoring.alerts import recording_names
    exprs = " ".join(t["expr"] for p in dashboards.fleet()["panels"] for t in p.get("targets", []))
    used = [name for name in recording_names() if name in exprs]
    assert len(used) >= 8, used


def test_every_panel_says_what_it_shows(board):
    _, data = board
    missing = [p["title"] for p in data["panels"]
               if p["type"] != "row" and not p.get("description", "").strip()]
    assert not missing


def test_fleet_host_tables_link_each_row_to_the_host_dashboard():
    tables = [p for p in dashboards.fleet()["panels"] if p["type"] == "table"]
    assert tables
    for p in tables:
        links = [link for o in p["fieldConfig"]["overrides"]
                 if o["matcher"] == {"id": "byName", "options": "instance"}
                 for prop in o["properties"] if prop["id"] == "links" for link in prop["value"]]
        assert len(links) == 1, p["title"]
        url = links[0]["url"]
        assert url.startswith(f"/d/{HOST_DASHBOARD_UID}?"), url
        assert "var-instance=${__data.fields.instance}" in url and "var-job=${job}" in url


def test_each_fault_links_its_runbook(board):
    _, data = board
    text = " ".join(p["options"]["content"] for p in data["panels"] if p["type"] == "text")
    for fault in FAULTS:
        url = alerts.runbook_url(alerts.fault_alert_name(fault))
        assert f"[{fault.title}]({url})" in text, fault.id
        page = REPO / "docs/runbooks" / url.rsplit("/", 1)[1]
        assert page.is_file(), page


def test_links_point_at_each_other():
    assert HOST_DASHBOARD_UID in dashboards.fleet()["links"][0]["url"]
    assert FLEET_DASHBOARD_UID in dashboards.host()["links"][0]["url"]


def test_provisioning_points_at_a_prometheus_datasource():
    prov = dashboards.provisioning()
    assert prov["dashboards/provisioning/dashboards.yml"]["providers"][0]["type"] == "file"
    assert prov["dashboards/provisioning/datasources.yml"]["datasources"][0]["type"] == \
        "prometheus"


def test_dashboards_of_a_selector_and_a_cluster_label(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "amp_exporter.monitoring", "--dashboards", str(tmp_path),
         "--cluster-label", "cluster", "--runbook-url-base", "https://wiki.example.com/rb/",
         "--selector", 'job="amp",env="prod"'],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    boards = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert sorted(boards) == ["amp-fleet.json", "amp-host.json"]
    for board in boards.values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert list(variables) == ["datasource", "cluster", "job", "instance"]
        assert variables["cluster"]["definition"] == \
            "label_values(amp_exporter_build_info, cluster)"
        assert variables["job"]["current"]["value"] == "amp"
        assert 'cluster=~"$cluster"' in variables["job"]["definition"]
        assert 'cluster=~"$cluster"' in variables["instance"]["definition"]
        exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        assert exprs
        for expr in exprs:  # every selector of every query
            for selector in re.findall(r"\{[^}]*\}", expr):
                assert 'cluster=~"$cluster"' in selector and 'env="prod"' in selector, expr
            assert "(job)" not in expr and "(job, instance" not in expr, expr
        text = json.dumps(board)
        assert "https://wiki.example.com/rb/" in text
        assert "github.com/amp-exporter" not in text
    fleet = boards["amp-fleet.json"]
    assert "var-cluster=${cluster}" in json.dumps(fleet)
