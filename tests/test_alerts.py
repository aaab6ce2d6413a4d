"""Alert and recording rules, the Alertmanager example and the runbooks: generated files
are current, and promtool / amtool accept and test them."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, have

from amp_exporter.catalog import FAULTS
from amp_exporter.monitoring import alertmanager, alerts, runbooks
from amp_exporter.monitoring.__main__ import outputs, stale
from amp_exporter.monitoring.config import TEXTFILE

needs_promtool = pytest.mark.skipif(not have("promtool"), reason="promtool missing")
needs_amtool = pytest.mark.skipif(not have("amtool"), reason="amtool missing")


def run(*argv: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_generated_files_are_current():
    assert stale(REPO, outputs()) == [], "run `python -m amp_exporter.monitoring`"
    result = run(sys.executable, "-m", "amp_exporter.monitoring", "--check")
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_stale_or_left_over_file(tmp_path):
    for path, text in outputs().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    (tmp_path / alerts.RULES_FILE).write_text("groups: []\n")
    (tmp_path / "docs/runbooks/old-alert.md").write_text("gone\n")
    result = run(sys.executable, "-m", "amp_exporter.monitoring", "--check",
                 "--root", str(tmp_path))
    assert result.returncode == 1
    assert "stale: alerts/amp-exporter.rules.yml" in result.stderr
    assert "stale: docs/runbooks/old-alert.md" in result.stderr


def test_one_alert_per_fault_from_the_catalog():
    rules = {r["alert"]: r for g in alerts.alert_groups() for r in g["rules"]}
    for f in FAULTS:
        rule = rules[alerts.fault_alert_name(f)]
        # a tier per severity the connector can report; with none reported, the tiers up to
        # the catalog's severity
        tiers = {r["labels"]["severity"]: r["expr"] for g in alerts.alert_groups()
                 for r in g["rules"] if r["alert"] == rule["alert"]}
        assert set(tiers) == {"critical", "warning", "info"}
        default = alerts.LEVEL_BY_ALERT_SEVERITY[f.alert_severity]
        for severity, expr in tiers.items():
            level = alerts.LEVEL_BY_ALERT_SEVERITY[severity]
            assert f">= {level})" in expr
            assert ("unless" in expr) == (level <= default), (f.id, severity)
        assert rule["for"] == f.alert_for
        assert f'fault_id="{f.id}"' in rule["expr"] and 'job="amp-exporter"' in rule["expr"]
    assert alerts.alert_name("Scan service restarting frequently") == \
        "CiscoAmpScanServiceRestartingFrequently"
    assert alerts.alert_name("SELinux policy missing or disabled") == \
        "CiscoAmpSELinuxPolicyMissingOrDisabled"
    assert alerts.runbook_anchor("CiscoAmpSELinuxPolicyMissingOrDisabled") == \
        "selinux-policy-missing-or-disabled"
    for name in ("ExporterDown", "ExporterAbsent", "CollectorFailing", "ConnectorNotInstalled",
                 "ConnectorDisconnected", "ConnectorDegraded", "ScanServiceRestarting",
                 "EventPressureHigh", "UnknownFaultReported", "ConnectorDaemonNotRunning",
                 "ConnectorNotAnswering"):
        assert f"CiscoAmp{name}" in rules
    for name in ("ConnectorDaemonNotRunning", "ConnectorNotAnswering"):
        assert rules[f"CiscoAmp{name}"]["labels"]["severity"] == "critical"


def test_textfile_rules_select_node_exporters_series_and_mean_the_right_absence():
    exporter = {r["alert"]: r for g in alerts.alert_groups() for r in g["rules"]}
    textfile = {r["alert"]: r for g in alerts.alert_groups(TEXTFILE) for r in g["rules"]
                if "alert" in r}
    assert set(textfile) == set(exporter) - {"CiscoAmpEventPressureHigh"} | {
        "CiscoAmpTextfileStale"}
    for name, rule in textfile.items():
        assert 'job="amp-exporter"' not in rule["expr"], name
        assert 'job="node"' in rule["expr"], name
    assert exporter["CiscoAmpExporterAbsent"]["expr"] == 'absent(up{job="amp-exporter"})'
    assert textfile["CiscoAmpExporterAbsent"]["expr"] == \
        'absent(amp_exporter_build_info{job="node"})'
    assert alerts.LAST_WRITE in textfile["CiscoAmpExporterDown"]["expr"]
    assert alerts.LAST_WRITE in textfile["CiscoAmpTextfileStale"]["expr"]


def test_every_alert_has_severity_summary_description_and_a_runbook_page():
    files = outputs()
    for group in alerts.alert_groups():
        for rule in group["rules"]:
            assert rule["alert"].startswith("CiscoAmp")
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            ann = rule["annotations"]
            assert ann["summary"] and ann["description"]
            base = "https://github.com/amp-exporter/amp-exporter/blob/main/docs/runbooks/"
            assert ann["runbook_url"].startswith(base)
            page = "docs/runbooks/" + ann["runbook_url"][len(base):]
            assert page in files, page
            assert f"# {rule['alert']}:" in files[page]


def test_recording_rule_names_are_level_metric_operation():
    for name in alerts.recording_names():
        level, metric, operation = name.split(":")
        assert level in ("job", "instance") and metric and operation, name


def test_runbooks_cover_every_fault_cause_and_action():
    pages = runbooks.runbooks()
    for f in FAULTS:
        text = pages[f"docs/runbooks/{alerts.runbook_anchor(alerts.fault_alert_name(f))}.md"]
        assert "amp-exporter check" in text and f.escalate in text
        for cause in f.causes:
            assert f"`{cause.name}`" in text
        for action in f.actions:
            assert action in text


def test_yaml_is_stable_and_round_trips():
    first, second = outputs(), outputs()
    assert first == second
    data = yaml.safe_load(first[alerts.RULES_FILE])
    assert data == {"groups": alerts.alert_groups()}


@needs_promtool
def test_promtool_checks_the_rules():
    result = run("promtool", "check", "rules", alerts.RULES_FILE, alerts.RECORDING_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "42 rules found" in result.stdout
    rules, recording = alerts.rule_files(TEXTFILE)
    result = run("promtool", "check", "rules", rules, recording)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "43 rules found" in result.stdout


@needs_promtool
@pytest.mark.parametrize(("directory", "expected"), [
    ("alerts/tests", ["connector.yaml", "faults.yaml", "recording.yaml"]),
    ("alerts/textfile/tests", ["connector.yaml", "faults.yaml", "textfile.yaml"]),
])
def test_promtool_unit_tests_pass(directory, expected):
    tests = sorted(p.name for p in (REPO / directory).glob("*.yaml"))
    assert tests == expected
    result = run("promtool", "test", "rules", *tests, cwd=REPO / directory)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize(("directory", "config"), [("alerts/tests", alerts.DEFAULT),
                                                   ("alerts/textfile/tests", TEXTFILE)])
def test_promtool_unit_tests_cover_every_alert_firing_and_quiet(directory, config):
    tested: dict[str, set] = {}
    severities: dict[str, set] = {}
    for path in (REPO / directory).glob("*.yaml"):
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                tested.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
                for alert in case["exp_alerts"]:
                    assert alert["exp_annotations"]["runbook_url"]
                    severities.setdefault(case["alertname"], set()).add(
                        alert["exp_labels"]["severity"])
    assert set(tested) == set(alerts.alert_names(config))
    assert all(v == {True, False} for v in tested.values()), tested
    for f in FAULTS:  # every fault alert is tested at each severity the connector can give
        assert severities[alerts.fault_alert_name(f)] == {"critical", "warning", "info"}


@needs_promtool
def test_promtool_unit_tests_catch_a_wrong_description(tmp_path):
    """The expected annotations are really compared: a changed word fails the test."""
    shutil.copy(REPO / alerts.RULES_FILE, tmp_path / "amp-exporter.rules.yml")
    (tmp_path / "tests").mkdir()
    text = (REPO / "alerts/tests/faults.yaml").read_text()
    assert "Causes the exporter found: kernel_headers_missing." in text
    (tmp_path / "tests/faults.yaml").write_text(
        text.replace("Causes the exporter found: kernel_headers_missing.",
                     "Causes the exporter found: something_else."))
    result = run("promtool", "test", "rules", "faults.yaml", cwd=tmp_path / "tests")
    assert result.returncode == 1 and "something_else" in result.stdout + result.stderr


@needs_amtool
def test_amtool_accepts_the_alertmanager_example():
    result = run("amtool", "check-config", alertmanager.ALERTMANAGER_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 inhibit rules" in result.stdout


@needs_amtool
@pytest.mark.parametrize(("labels", "receiver"), [
    (["alertname=CiscoAmpIncompatibleKernel", "severity=critical", "fault_id=16"], "amp-pager"),
    (["alertname=CiscoAmpScanServiceRestartingFrequently", "severity=warning", "fault_id=6"],
     "amp-chat"),
    (["alertname=CiscoAmpEventPressureHigh", "severity=info", "fault_id=18"], "amp-tickets"),
    (["alertname=CiscoAmpExporterDown", "severity=warning"], "amp-chat"),
    (["alertname=CiscoAmpConnectorDaemonNotRunning", "severity=critical",
      "state=daemon_not_running"], "amp-pager"),
    (["alertname=CiscoAmpConnectorNotAnswering", "severity=critical", "state=not_answering"],
     "amp-pager"),
    (["alertname=CiscoAmpConnectorEventMonitoringOverloaded", "severity=critical",
      "fault_id=18"], "amp-pager"),
    (["alertname=SomethingElse", "severity=critical"], "amp-chat"),
])
def test_amtool_routes_by_severity(labels, receiver):
    result = run("amtool", "config", "routes", "test",
                 f"--config.file={alertmanager.ALERTMANAGER_FILE}",
                 f"--verify.receivers={receiver}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alertmanager_inhibits_per_host_and_per_fault():
    config = alertmanager.alertmanager_config()
    assert config["route"]["group_by"] == ["alertname", "fault_id", "instance"]
    rules = config["inhibit_rules"]
    assert {"source_matchers": ['alertname="CiscoAmpExporterDown"'],
            "target_matchers": ['alertname=~"CiscoAmp.+"', 'alertname!="CiscoAmpExporterDown"'],
            "equal": ["instance"]} in rules
    critical = next(r for r in rules if r["target_matchers"] == ['severity="warning"'])
    assert critical["equal"] == ["fault_id", "instance"]


BASE = "https://wiki.example.com/amp/runbooks/"


@needs_promtool
@pytest.mark.parametrize("deployment", ["exporter", "textfile"])
def test_a_cluster_label_and_own_runbooks_give_rules_promtool_accepts(tmp_path, deployment):
    result = run(sys.executable, "-m", "amp_exporter.monitoring", "--rules", str(tmp_path),
                 "--deployment", deployment, "--cluster-label", "cluster",
                 "--runbook-url-base", BASE, "--selector", 'job="amp",env="prod"')
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob("*.yml"))
    assert len(files) == 2
    checked = run("promtool", "check", "rules", *map(str, files))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    groups = [g for f in files for g in yaml.safe_load(f.read_text())["groups"]]
    rules = [r for g in groups for r in g["rules"]]
    for rule in rules:
        assert 'env="prod"' in rule["expr"] or "job:" in rule["expr"] \
            or "instance:" in rule["expr"], rule["expr"]
        for word in ("by", "on"):  # every aggregation and join keeps the cluster
            assert f"{word} (job)" not in rule["expr"] and f"{word} (job," not in \
                rule["expr"].replace(f"{word} (job, cluster", ""), rule["expr"]
        if "alert" in rule:
            notes = rule["annotations"]
            assert notes["runbook_url"].startswith(BASE)
            assert notes["description"].endswith(
                "{{ with $labels.cluster }}\nCluster: {{ . }}.{{ end }}")
            assert notes["cluster"] == "{{ $labels.cluster }}"


def test_cluster_label_must_be_a_label_name(tmp_path):
    result = run(sys.executable, "-m", "amp_exporter.monitoring", "--rules", str(tmp_path),
                 "--cluster-label", "my-cluster")
    assert result.returncode == 2 and "not a label name" in result.stderr
    result = run(sys.executable, "-m", "amp_exporter.monitoring", "--cluster-label", "c")
    assert result.returncode == 2 and "need --rules or --dashboards" in result.stderr
