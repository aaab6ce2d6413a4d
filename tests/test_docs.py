"""Docs derive from the code: generated files are fresh, and every exposed metric is declared
(and so documented)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import parse_exposition

from amp_exporter import docs
from amp_exporter.host import events
from amp_exporter.host.ebpf_program import FAMILIES, FAMILY_HELP, PROCFS_FAMILIES
from amp_exporter.host.paths import HostPaths
from amp_exporter.registry import DESCS
from amp_exporter.scrape import PROCESS_DESCS, available

DOCS = Path(__file__).parent.parent / "docs"

GOLDEN = Path(__file__).parent / "golden"

# The public contract (shared/reference/contract.md): these names must exist. Never rename.
CONTRACT = {
    "cisco_amp_connector_installed", "cisco_amp_connector_connected",
    "cisco_amp_connector_degraded", "cisco_amp_connector_info", "cisco_amp_fault_active",
    "cisco_amp_fault_severity", "cisco_amp_fault_cause", "cisco_amp_fault_info",
    "cisco_amp_process_up", "cisco_amp_scan_service_restarts_total",
    "cisco_amp_kernel_module_loaded", "cisco_amp_bpf_programs",
    "amp_exporter_scrape_collector_success", "amp_exporter_scrape_collector_duration_seconds",
    "amp_exporter_build_info", "cisco_amp_host_events_total", "amp_exporter_events_source",
}


def test_generated_docs_are_fresh():
    available()  # every collector module imported, so every metric is declared
    assert docs.main(["--check"]) == 0, "run: .venv/bin/python -m amp_exporter.docs"


def test_every_exposed_metric_is_declared():
    available()
    declared = {d.exposed_name for d in DESCS}
    exposed = set()
    for path in GOLDEN.glob("*.prom"):
        for name, _samples in parse_exposition(path.read_text()).items():
            exposed.add(name)
    assert exposed - declared == set()


def test_the_contract_is_kept():
    available()
    assert CONTRACT - {d.exposed_name for d in DESCS} == set()


def test_names_follow_conventions():
    available()
    for d in (*DESCS, *PROCESS_DESCS):
        # Ours are namespaced; the exporter's own process_* keep the clients' standard names.
        assert d.name.startswith(("cisco_amp_", "amp_exporter_")) or d in PROCESS_DESCS, d.name
        assert not d.name.endswith("_total"), f"{d.name}: counters get _total from the client"
        if d.name.endswith("_info"):
            assert d.kind == "gauge" and d.labels
        assert d.help.endswith((".", ")")), d.name
    assert len({d.name for d in DESCS}) == len(DESCS), "a metric is declared twice"


def test_every_event_family_is_documented(hosts):
    assert set(FAMILY_HELP) == set(FAMILIES)
    # The fallback's documented families are exactly those it exports.
    counts, _ = events.procfs_counts(HostPaths(str(hosts["healthy-ebpf-btf"])))
    assert set(counts) == set(PROCFS_FAMILIES)
    table = (DOCS / "metrics.md").read_text()
    for family in FAMILIES:
        assert f"| `{family}` | {FAMILY_HELP[family]} |" in table


def test_ci_runs_the_readme_test_command():
    # The README's one test command is what CI runs, word for word: a green CI run is then
    # a green run for a newcomer who follows the README.
    repo = DOCS.parent
    readme = (repo / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
    test_block = next(b for b in blocks if "scripts/test" in b)
    [command] = test_block.strip().splitlines()
    assert command == "./scripts/test"
    # .ci/run reads the command from the README itself, at every run: the one it finds is
    # the README's (a marker moved to another block, or lost, fails here).
    ci = subprocess.run([str(repo / ".ci/run"), "--print"], capture_output=True, text=True,
                        timeout=30)
    assert (ci.returncode, ci.stdout) == (0, command + "\n"), ci.stderr
