"""The textfile deployment end to end, with Debian's prometheus-node-exporter as packaged:
amp-exporter-textfile.service's own ExecStart writes the exposition where that binary reads
by default (each host in a private mount namespace, a tmpfs over
/var/lib/prometheus/node-exporter), node_exporter serves it with no textfile flag, a real
Prometheus scrapes those node_exporters as job "node" with the rules of alerts/textfile/,
and every dashboard query evaluates with $job=node. Also deploy/systemd/textfile-dir, which
tells install.sh where node_exporter reads."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import (
    EXPORTER,
    REPO,
    LoopbackDaemon,
    copy_host,
    free_port,
    fresh_definitions,
    have,
    parse_exposition,
)
from test_prometheus_integration import Prometheus, substitute

from amp_exporter.monitoring import alerts, dashboards
from amp_exporter.monitoring.config import TEXTFILE

UNIT = REPO / "deploy/systemd/amp-exporter-textfile.service"
TEXTFILE_DIR_SCRIPT = REPO / "deploy/systemd/textfile-dir"
UNIT_BINARY = "/opt/amp-exporter/bin/amp-exporter"
NODE_EXPORTER = "prometheus-node-exporter"
DEBIAN_DIR = "/var/lib/prometheus/node-exporter"  # its default, and the unit's --output dir
# Every process started here ends by itself after this long, whatever happens to pytest.
LIFETIME = "180"

AMP_HOSTS = ("daemon-dead", "ampcli-silent", "fault-18-overloaded", "healthy-ebpf-btf",
             "healthy-ebpf-headers", "healthy-kmod")
BARE = "node-only"  # a node_exporter with no amp-exporter file at all
HOST_ARGS = {"ampcli-silent": ("--ampcli.timeout", "1")}
STATE = {"daemon-dead": "daemon_not_running", "ampcli-silent": "not_answering"}  # else answering

# Alerts per host once Prometheus has evaluated a few times (all pending: every `for:`
# is minutes), and the severity each must carry.
EXPECTED_ALERTS = {
    "daemon-dead": {"CiscoAmpConnectorDaemonNotRunning": "critical"},
    "ampcli-silent": {"CiscoAmpConnectorNotAnswering": "critical"},
    "fault-18-overloaded": {"CiscoAmpConnectorEventMonitoringOverloaded": "critical"},
}
# May come along: a timed-out ampcli fails the connector collector; fault 18 degrades.
ALSO_ALLOWED = {
    "ampcli-silent": {"CiscoAmpCollectorFailing"},
    "fault-18-overloaded": {"CiscoAmpConnectorDegraded"},
}
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

# Dashboard panels (file, title, refId) that return nothing in the textfile shape, and why.
NO_DATA = {
    ("amp-fleet.json", "Unknown faults", "A"):
        "this fleet has no host reporting a fault ID outside the catalog",
    ("amp-fleet.json", "Disconnected hosts", "A"):
        "this fleet has no disconnected connector (daemon-dead and ampcli-silent report no "
        "connection state at all: ampcli said nothing)",
    ("amp-fleet.json", "Top event pressure", "A"):
        "textfile shape: cisco_amp_event_pressure_ratio needs a rate, which a one-shot "
        "`amp-exporter textfile` cannot measure, so it is never written",
    ("amp-host.json", "Causes found", "A"):
        "no cause applies to this fleet but fault 18's event_pressure_high, and a one-shot "
        "cannot measure pressure (it leaves that cause out)",
    ("amp-host.json", "Event pressure", "A"):
        "textfile shape: no cisco_amp_event_pressure_ratio (see Top event pressure)",
    ("amp-host.json", "Top commands by event rate", "A"):
        "textfile shape: cisco_amp_process_event_rate needs the eBPF source, which the "
        "one-shot never loads (events come from proc/stat)",
}

needs_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or not have("unshare") or not have(NODE_EXPORTER),
    reason="needs root, unshare (util-linux) and Debian's prometheus-node-exporter")


# -- the unit's ExecStart --------------------------------------------------------------------

def unit_exec_start(unit: Path = UNIT) -> list[str]:
    """The [Service] ExecStart= of UNIT, split into words as systemd splits it."""
    section, found = "", []
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif section == "[Service]" and line.startswith("ExecStart="):
            found.append(line.partition("=")[2])
    assert len(found) == 1, found
    words = shlex.split(found[0])
    words[0] = words[0].lstrip("-@:+!")  # systemd's prefixes (none expected)
    assert not any("%" in w for w in words), f"specifiers not handled here: {words}"
    return words


def expand_systemd(words: list[str], env: dict[str, str]) -> list[str]:
    """systemd's variable expansion in ExecStart: a word that is only $NAME becomes the
    value's whitespace-separated words (none when empty); ${NAME} expands in place."""
    out: list[str] = []
    for word in words:
        alone = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if alone:
            out += env.get(alone.group(1), "").split()
        else:
            out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                              lambda m: env.get(m.group(1), ""), word))
    return out


def textfile_command(root: Path, *extra: str) -> list[str]:
    """The unit's ExecStart for host ROOT, the binary replaced by this checkout's."""
    words = unit_exec_start()
    assert words[0] == UNIT_BINARY, words
    args = " ".join(["--path.rootfs", str(root), *extra])
    return expand_systemd([*EXPORTER, *words[1:]], {"AMP_EXPORTER_ARGS": args})


# -- node_exporter, each in a mount namespace of its own ---------------------------------------

# Runs in `unshare --mount`: a tmpfs over Debian's textfile directory (this namespace only),
# the unit's command if one is given, then node_exporter as packaged plus a listen address.
NAMESPACE = r"""
set -eu
mount -t tmpfs -o mode=0755 tmpfs "$AMP_DIR"
if [ "$#" -gt 0 ]; then
    "$@"
    echo "textfile unit: exit 0; $AMP_DIR: $(ls -A "$AMP_DIR")"
fi
exec timeout -k 5 "$AMP_LIFETIME" prometheus-node-exporter \
    --web.listen-address="127.0.0.1:$AMP_PORT"
"""


class NodeExporter:
    def __init__(self, name: str, command: list[str], log: Path) -> None:
        self.name, self.port, self.log = name, free_port(), log
        env = {**os.environ, "PYTHONPATH": str(REPO), "AMP_DIR": DEBIAN_DIR,
               "AMP_PORT": str(self.port), "AMP_LIFETIME": LIFETIME}
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", NAMESPACE,
                 "namespace", *command],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd="/")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=10) as r:
            return r.read().decode()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{self.name}: node_exporter not serving "
                             f"(exit {self.proc.poll()}):\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def real_textfile_dir() -> list[str]:
    return sorted(os.listdir(DEBIAN_DIR)) if os.path.isdir(DEBIAN_DIR) else []


@pytest.fixture(scope="module")
def nodes(hosts, tmp_path_factory):
    """{name: NodeExporter} for the amp hosts and BARE, all serving."""
    logs = tmp_path_factory.mktemp("node-exporters")
    before = real_textfile_dir()
    started: dict[str, NodeExporter] = {}
    try:
        t0 = time.monotonic()
        for name in AMP_HOSTS:
            # Copies with fresh definitions: the alerts below run over them.
            root = fresh_definitions(copy_host(hosts[name], logs / "hosts" / name))
            command = textfile_command(root, *HOST_ARGS.get(name, ()))
            started[name] = NodeExporter(name, command, logs / f"{name}.log")
        started[BARE] = NodeExporter(BARE, [], logs / f"{BARE}.log")
        for node in started.values():
            node.wait_ready()
        print(f"\n{len(started)} node_exporters serving after {time.monotonic() - t0:.1f} s")
        yield started
    finally:
        for node in started.values():
            node.proc.terminate()  # all at once
        for node in started.values():
            node.stop()
    # The namespaces kept everything to themselves.
    assert real_textfile_dir() == before


@needs_namespaces
@pytest.mark.parametrize("name", [*AMP_HOSTS, BARE])
def test_debian_node_exporter_serves_what_the_unit_writes(nodes, name):
    node = nodes[name]
    log = node.log.read_text()
    scrape = parse_exposition(node.metrics())
    assert scrape["node_textfile_scrape_error"] == {(): 0.0}, log
    ours = sorted(n for n in scrape if n.startswith(("cisco_amp_", "amp_exporter_")))
    if name == BARE:
        assert ours == [] and "node_textfile_mtime_seconds" not in scrape
        return
    assert f"textfile unit: exit 0; {DEBIAN_DIR}: amp-exporter.prom\n" in log, log
    assert scrape["node_textfile_mtime_seconds"] == {
        (("file", f"{DEBIAN_DIR}/amp-exporter.prom"),): pytest.approx(time.time(), abs=120)}
    written = scrape["amp_exporter_textfile_write_timestamp_seconds"][()]
    assert abs(written - time.time()) < 120, written
    states = {dict(k)["state"]: v for k, v in scrape["cisco_amp_connector_state"].items()}
    assert states[STATE.get(name, "answering")] == 1 and sum(states.values()) == 1, states
    assert len(scrape["amp_exporter_build_info"]) == 1
    # node_exporter's own series are all there too: the package as it comes
    assert scrape["node_scrape_collector_success"][(("collector", "textfile"),)] == 1
    assert "node_cpu_seconds_total" in scrape and "node_uname_info" in scrape


# -- a real Prometheus over them ---------------------------------------------------------------

class NodePrometheus(Prometheus):
    """test_prometheus_integration's Prometheus, scraping job "node" with the textfile rules."""

    def __init__(self, tmp: Path, targets: list[str]) -> None:
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "1s"},
            "rule_files": [str(REPO / f) for f in alerts.rule_files(TEXTFILE)],
            "scrape_configs": [{"job_name": TEXTFILE.job,
                                "static_configs": [{"targets": targets}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        LoopbackDaemon.__init__(
            self, ["timeout", "-k", "5", LIFETIME, "prometheus",
                   f"--config.file={tmp / 'prometheus.yml'}",
                   f"--storage.tsdb.path={tmp / 'data'}",
                   f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            tmp / "prometheus.log", port)

    def evaluate(self, expr: str) -> tuple[list, str | None]:
        """(result, None), or ([], the error Prometheus gave)."""
        try:
            answer = self.get("/api/v1/query", query=expr)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
            return [], f"{exc.code} {body.get('errorType')}: {body.get('error')}"
        if answer["status"] != "success":
            return [], f"{answer.get('errorType')}: {answer.get('error')}"
        return answer["data"]["result"], None


@pytest.fixture
def prometheus(nodes, tmp_path):
    prom = NodePrometheus(tmp_path, sorted(n.address for n in nodes.values()))
    try:
        yield prom
    finally:
        prom.stop()


def value(prom: Prometheus, expr: str) -> str | None:
    result = prom.query(expr)
    return result[0]["value"][1] if result else None


@pytest.mark.slow
@pytest.mark.skipif(not have("prometheus"), reason="prometheus binary missing")
@needs_namespaces
def test_textfile_rules_and_dashboards_against_a_real_prometheus(nodes, prometheus):
    started = time.monotonic()
    prom, amp = prometheus, [n for n in nodes if n != BARE]
    by_instance = {node.address: name for name, node in nodes.items()}
    sel = TEXTFILE.selector
    prom.wait("prometheus ready", lambda: prom.get("/api/v1/status/buildinfo"))
    prom.wait("every node_exporter up", lambda: value(prom, f"sum(up{{{sel}}})") == "7")
    prom.wait("rates over two scrapes", lambda: len(
        prom.query("instance:cisco_amp_host_events:rate5m")) == len(amp))
    prom.wait("a few rule evaluations", lambda: all(
        g["lastEvaluation"] > "2" and g["rules"][0]["lastEvaluation"] > "2"
        for g in prom.get("/api/v1/rules")["data"]["groups"]))
    prom.wait("the expected alerts", lambda: all(
        set(want) <= {a["labels"]["alertname"] for a in prom.get("/api/v1/alerts")["data"]
                      ["alerts"] if by_instance[a["labels"]["instance"]] == name}
        for name, want in EXPECTED_ALERTS.items()))
    time.sleep(2)  # a couple more evaluations: whatever else would come has come

    # job:up:sum counts only the node_exporters that serve amp-exporter's series
    assert value(prom, f"count(up{{{sel}}})") == "7"
    assert [(r["metric"], r["value"][1]) for r in prom.query("job:up:sum")] == [
        ({"__name__": "job:up:sum", "job": "node"}, "6")]

    # alerts: the expected ones with their severity, nothing above info elsewhere, and
    # ExporterAbsent nowhere (six hosts serve amp_exporter_build_info)
    seen: dict[str, dict[str, str]] = {name: {} for name in nodes}
    states: dict[tuple[str, str], str] = {}
    descriptions: dict[tuple[str, str], str] = {}
    for alert in prom.get("/api/v1/alerts")["data"]["alerts"]:
        labels = alert["labels"]
        assert labels["alertname"] != "CiscoAmpExporterAbsent", alert
        name = by_instance[labels["instance"]]
        # one rule per severity tier for fault alerts: the worst one is what pages
        worst = seen[name].get(labels["alertname"], "info")
        seen[name][labels["alertname"]] = max(worst, labels["severity"], key=SEVERITY_RANK.get)
        states[name, labels["alertname"]] = alert["state"]
        descriptions[name, labels["alertname"]] = alert["annotations"]["description"]
    print("\nalerts per host (name: severity, state):")
    for name, got in seen.items():
        print(f"  {name}: " + (", ".join(f"{a}: {s}, {states[name, a]}"
                                         for a, s in sorted(got.items())) or "none"))
    for name, want in EXPECTED_ALERTS.items():
        assert {a: seen[name].get(a) for a in want} == want, (name, seen[name])
        assert set(seen[name]) <= set(want) | ALSO_ALLOWED.get(name, set()), (name, seen[name])
    for name, want in EXPECTED_ALERTS.items():  # every `for:` is minutes: pending, not firing
        assert {states[name, a] for a in want} == {"pending"}, (name, states)
    print("  fault 18 says: " + descriptions["fault-18-overloaded",
                                             "CiscoAmpConnectorEventMonitoringOverloaded"])
    for name in (*AMP_HOSTS, BARE):
        if name not in EXPECTED_ALERTS:
            above_info = {a: s for a, s in seen[name].items() if SEVERITY_RANK[s] > 0}
            assert not above_info, (name, above_info)
    rules = {r["name"]: r for g in prom.get("/api/v1/rules")["data"]["groups"]
             for r in g["rules"]}
    assert rules["CiscoAmpExporterAbsent"]["state"] == "inactive"
    assert all(r["health"] == "ok" for r in rules.values()), \
        {n: r.get("lastError") for n, r in rules.items() if r["health"] != "ok"}

    # every dashboard query with $job=node: none errors; which return nothing, and why
    errors, empty, checked = [], {}, 0
    for path in (dashboards.FLEET_FILE, dashboards.HOST_FILE):
        board = json.loads((REPO / path).read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                key = (Path(path).name, panel["title"], target["refId"])
                result, error = prom.evaluate(substitute(target["expr"], job=TEXTFILE.job))
                checked += 1
                if error:
                    errors.append(f"{key}: {error}: {target['expr']}")
                elif not result:
                    empty[key] = target["expr"]
                if key == ("amp-host.json", "Exporter up", "A"):  # node_exporter's up
                    up_hosts = sorted(by_instance[r["metric"]["instance"]] for r in result)
        variables = {}
        for variable in board["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable.get("definition", ""))
            if match:
                variables[variable["name"]] = set(prom.get(
                    f"/api/v1/label/{match.group(2)}/values",
                    **{"match[]": substitute(match.group(1), job=TEXTFILE.job)})["data"])
        # the Host variable offers the hosts that serve amp-exporter's series, not BARE
        assert variables == {"job": {"node"},
                             "instance": {nodes[n].address for n in amp}}, path
    print(f"dashboard queries: {checked} evaluated, {len(errors)} errors, "
          f"{len(empty)} empty:")
    for key in empty:
        print(f"  {key}: {NO_DATA.get(key, 'UNEXPECTED')}")
    print(f"  host dashboard 'Exporter up' with Host=All shows: {', '.join(up_hosts)}")
    assert not errors, "\n".join(errors)
    assert set(empty) == set(NO_DATA), {k: v for k, v in empty.items() if k not in NO_DATA}
    assert checked >= 44, checked
    elapsed = time.monotonic() - started
    print(f"test body: {elapsed:.1f} s")
    assert elapsed < 40


# -- deploy/systemd/textfile-dir ---------------------------------------------------------------

def textfile_dir(root: Path | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ROOT"}
    if root is not None:
        env["ROOT"] = str(root)
    return subprocess.run(["sh", str(TEXTFILE_DIR_SCRIPT)], capture_output=True, text=True,
                          env=env, timeout=30)


def fake_process(root: Path, pid: int, comm: str, *argv: str) -> None:
    proc = root / "proc" / str(pid)
    proc.mkdir(parents=True)
    (proc / "comm").write_text(comm[:15] + "\n")  # the kernel cuts comm to 15 characters
    (proc / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))


def test_textfile_dir_finds_a_running_node_exporters_flag(tmp_path):
    fake_process(tmp_path, 77, "bash", "bash", "-c",
                 "echo --collector.textfile.directory=/not/node_exporter")
    fake_process(tmp_path, 123, "node_exporter", "/usr/local/bin/node_exporter",
                 "--web.listen-address=:9100", "--collector.textfile.directory=/srv/tf")
    result = textfile_dir(tmp_path)
    assert (result.returncode, result.stdout) == (0, "/srv/tf\n"), result


def test_textfile_dir_reads_debians_cut_comm_and_a_separate_value(tmp_path):
    fake_process(tmp_path, 4242, "prometheus-node-exporter",
                 "/usr/bin/prometheus-node-exporter", "--collector.textfile.directory",
                 "/srv/two")
    assert (tmp_path / "proc/4242/comm").read_text() == "prometheus-node\n"
    result = textfile_dir(tmp_path)
    assert (result.returncode, result.stdout) == (0, "/srv/two\n"), result


def test_textfile_dir_falls_back_to_the_defaults_file(tmp_path):
    (tmp_path / "etc/sysconfig").mkdir(parents=True)
    (tmp_path / "etc/sysconfig/node_exporter").write_text(
        '# node_exporter options (EPEL)\nOPTIONS="--collector.textfile.directory=/var/lib/x"\n')
    result = textfile_dir(tmp_path)
    assert (result.returncode, result.stdout) == (0, "/var/lib/x\n"), result


def test_textfile_dir_ignores_a_commented_flag_and_says_it_must_be_given(tmp_path):
    (tmp_path / "etc/default").mkdir(parents=True)
    (tmp_path / "etc/default/prometheus-node-exporter").write_text(
        'ARGS=""\n# ARGS="--collector.textfile.directory=/srv/commented"\n'
        '  #OPTIONS="--collector.textfile.directory=/srv/indented"\n')
    result = textfile_dir(tmp_path)
    assert (result.returncode, result.stdout) == (
        3, "/var/lib/node_exporter/textfile_collector\n"), result


DEFAULTS_FILES = ("/etc/default/prometheus-node-exporter",  # as textfile-dir reads them
                  "/etc/sysconfig/prometheus-node_exporter", "/etc/sysconfig/node_exporter",
                  "/etc/default/node_exporter")


def configured_node_exporter_dirs() -> set[str]:
    """The --collector.textfile.directory of every node_exporter running here, and of the
    defaults files on this machine."""
    dirs = set()
    for path in DEFAULTS_FILES:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.lstrip().startswith("#"):
                dirs |= set(re.findall(r"--collector\.textfile\.directory[= ][\"']*([^ \"']*)",
                                       line))
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            comm = (proc / "comm").read_text().strip()
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if comm != "node_exporter" and not comm.startswith("prometheus-node"):
            continue
        for i, arg in enumerate(argv):
            if arg.startswith("--collector.textfile.directory="):
                dirs.add(arg.partition("=")[2])
            elif arg == "--collector.textfile.directory" and i + 1 < len(argv):
                dirs.add(argv[i + 1])
    return dirs


@pytest.mark.skipif(not have(NODE_EXPORTER), reason="Debian's prometheus-node-exporter missing")
def test_textfile_dir_on_this_machine_is_debians_default():
    others = configured_node_exporter_dirs() - {DEBIAN_DIR}
    if others:
        pytest.skip(f"a node_exporter here is given --collector.textfile.directory={others}")
    result = textfile_dir(None)
    assert (result.returncode, result.stdout) == (0, DEBIAN_DIR + "\n"), result
