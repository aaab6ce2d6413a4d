"""The layout is the architecture: host facts (amp_exporter/host, the one door to the
host) <- what a collector is (registry, causes) <- the collectors <- the scrape loop <-
the command line, server and docs; the generated monitoring beside them, on the catalog
alone. Imports run one way, function-level ones included, and there is no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "amp_exporter"
# Lower layers never import higher ones. Modules of one layer may import each other as
# long as there is no cycle.
LAYERS = [
    {"amp_exporter", "amp_exporter.catalog", "amp_exporter.exposition",
     "amp_exporter.logsetup"},
    {"amp_exporter.host"},  # and every amp_exporter.host.* module
    {"amp_exporter.registry", "amp_exporter.causes"},
    {"amp_exporter.collectors"},  # and amp_exporter.collectors.*
    {"amp_exporter.scrape"},
    {"amp_exporter.check", "amp_exporter.statuspage", "amp_exporter.web",
     "amp_exporter.webconfig", "amp_exporter.docs", "amp_exporter.cli", "amp_exporter.__main__"},
]
MONITORING = "amp_exporter.monitoring"  # generated alerts and dashboards: on the catalog only


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """amp_exporter modules PATH imports, anywhere in it (a name imported from a package
    counts as that submodule when there is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("amp_exporter")}
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("amp_exporter"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def layer(name: str) -> int | None:
    for i, members in enumerate(LAYERS):
        for m in members:
            if name == m or (m != "amp_exporter" and name.startswith(m + ".")):
                return i
    return None


def test_every_module_has_a_place():
    assert {n for n in MODULES if layer(n) is None and not n.startswith(MONITORING)} == set()


def test_imports_run_one_way():
    wrong = [(a, b) for a, deps in GRAPH.items() if not a.startswith(MONITORING)
             for b in deps if not b.startswith(MONITORING) and layer(b) > layer(a)]
    assert wrong == [], "a lower layer imports a higher one: " + repr(wrong)


def test_the_host_layer_makes_no_metrics():
    for name, path in MODULES.items():
        if name.startswith("amp_exporter.host"):
            assert "prometheus_client" not in path.read_text(), name


def test_the_generated_monitoring_rests_on_the_catalog_alone():
    for name, deps in GRAPH.items():
        if name.startswith(MONITORING):
            assert deps <= {"amp_exporter.catalog"} | {
                d for d in deps if d.startswith(MONITORING)}, (name, deps)


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(GRAPH.get(node, ())):
            if dep == "amp_exporter" or dep not in GRAPH:
                continue  # the package's own __init__ holds only the version
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, dep]))
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])
