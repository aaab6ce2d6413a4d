"""Each collector against the example hosts, asserting values, through the command line."""

from __future__ import annotations

import re

import pytest

from amp_exporter.catalog import FAULTS, all_causes

HEALTHY = ("healthy-ebpf-btf", "healthy-ebpf-headers", "healthy-kmod")
ALL_COLLECTORS = {"bpf", "connector", "events", "kernel", "logs", "network", "processes",
                  "scan_service", "scan_user", "selinux"}
EVERY_CAUSE = {(fid, c.name) for fid, c in all_causes()}

def active_faults(s):
    return {int(dict(k)["fault_id"]): s.value("cisco_amp_fault_severity", **dict(k))
            for k, v in s["cisco_amp_fault_active"].items() if v == 1}


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_hosts_of_every_generation(hosts, scrape, name):
    s = scrape(hosts[name])
    assert s.success() == dict.fromkeys(ALL_COLLECTORS, 1.0)
    assert s.value("cisco_amp_connector_installed") == 1
    assert s.value("cisco_amp_connector_connected") == 1
    assert s.value("cisco_amp_connector_degraded") == 0
    assert active_faults(s) == {}
    # Every catalog fault and every catalog cause is present, all 0, but event pressure's:
    # one collection (textfile) measures no rate, so that check cannot run and says so.
    assert {int(dict(k)["fault_id"]) for k in s["cisco_amp_fault_active"]} == {
        f.id for f in FAULTS}
    assert {(int(dict(k)["fault_id"]), dict(k)["cause"]) for k in s["cisco_amp_fault_cause"]
            } == EVERY_CAUSE - {(18, "event_pressure_high")}
    assert s.found_causes() == set()
    assert s.value("cisco_amp_process_up", process="ampdaemon") == 1
    assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
    assert s.value("cisco_amp_scan_service_restarts_total") == 0


def test_ebpf_host_details(hosts, scrape):
    s = scrape(hosts["healthy-ebpf-btf"])
    assert s.value("cisco_amp_bpf_programs", process="ampdaemon") == 6
    assert s.value("cisco_amp_bpf_maps", process="ampdaemon") == 6
    assert s.value("cisco_amp_bpf_programs", process="ampscansvc") == 0
    by_type = {dict(k)["type"]: v for k, v in s["cisco_amp_bpf_programs_by_type"].items()}
    # kprobes; no TC classifier (sched_cls): those serve network isolation only
    assert by_type == {"kprobe": 6}
    assert s.value("cisco_amp_kernel_btf_available") == 1
    assert s.value("cisco_amp_kernel_module_loaded", module="ampfsm") == 0
    assert s.value("cisco_amp_secure_boot_enabled") == 1
    assert s.value("cisco_amp_selinux_enforcing") == 1
    assert s.value("cisco_amp_tcp_connections", process="ampdaemon", state="established") == 1
    assert s.value("amp_exporter_network_source", source="procfs") == 1
    info = s["cisco_amp_connector_info"]
    assert len(info) == 1
    assert dict(next(iter(info)))["version"].startswith("1.26.0")


def test_kmod_host_details(hosts, scrape):
    s = scrape(hosts["healthy-kmod"])
    for module in ("ampavflt", "ampfsm", "ampnetworkflow"):
        assert s.value("cisco_amp_kernel_module_loaded", module=module) == 1
    assert s.value("cisco_amp_bpf_programs", process="ampdaemon") == 0
    assert s.value("cisco_amp_secure_boot_enabled") == 0


def test_unknown_fault_id_is_reported_too(hosts, scrape):
    s = scrape(hosts["multi-fault"])
    assert s.value("cisco_amp_fault_active", fault_id=23) == 1
    assert s.value("cisco_amp_fault_severity", fault_id=23) == 2
    assert s.value("cisco_amp_faults", severity="critical") == 1
    assert s.value("cisco_amp_fault_info", fault_id=23, title="x") is None


def test_fault_16_needs_a_supported_list(hosts, scrape):
    root = hosts["fault-16-incompatible-kernel"]
    assert scrape(root).causes(16) == {"kernel_not_supported": 0}
    s = scrape(root, "--check.supported-kernels", "5.14.0-*.el9*,4.18.0-*.el8*")
    assert s.causes(16) == {"kernel_not_supported": 1}
    s = scrape(root, "--check.supported-kernels", "6.12.0-*")
    assert s.causes(16) == {"kernel_not_supported": 0}


def test_policy_turning_features_off_clears_module_causes(host_copy, scrape):
    root = host_copy("fault-8-file-monitoring")
    policy = root / "opt/cisco/amp/etc/policy.xml"
    text = policy.read_text()
    text = text.replace("<file>1</file>", "<file>0</file>").replace(
        "<enable>1</enable></nfm>", "<enable>0</enable></nfm>")
    policy.write_text(text)
    s = scrape(root)
    assert s.value("cisco_amp_policy_feature_enabled", feature="file_copy_move_monitoring") == 0
    # The connector still reports fault 8: its word that the feature is on beats a policy
    # file (which may be stale), so the module causes stay.
    assert s.found_causes() >= {(8, "ampavflt_not_loaded"), (8, "ampfsm_not_loaded")}
    # Once it reports nothing, the policy read says off: a missing module is no cause.
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    ampcli.write_text(re.sub(r"\nID 8 - [^\n]*", "", ampcli.read_text()).replace(
        "Fault IDs: 8", "Fault IDs: None").replace("Faults: 1 Critical", "Faults: None"))
    s = scrape(root)
    assert s.value("cisco_amp_fault_active", fault_id="8") == 0
    assert s.causes(8) == dict.fromkeys(s.causes(8), 0.0) and s.causes(8)


def test_host_without_connector(hosts, scrape):
    s = scrape(hosts["no-connector"])
    assert s.value("cisco_amp_connector_installed") == 0
    assert set(s["cisco_amp_fault_active"].values()) == {0}
    assert len(s["cisco_amp_fault_active"]) == len(FAULTS)
    assert s.found_causes() == set()
    assert set(s.success().values()) == {1}
    assert "cisco_amp_process_up" not in s


def test_disabled_collectors_do_not_run(hosts, scrape):
    s = scrape(hosts["healthy-ebpf-btf"], "--collector.disable-defaults", "--collector.kernel")
    assert s.success() == {"kernel": 1}
    s = scrape(hosts["healthy-ebpf-btf"], "--no-collector.connector", "--no-collector.logs")
    assert set(s.success()) == ALL_COLLECTORS - {"connector", "logs"}
    assert "cisco_amp_fault_active" not in s


def write_status(root, text: str) -> None:
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    ampcli.write_text(f"#!/bin/sh\ncat <<'EOF'\n{text}EOF\n")


def test_rhel7_without_modules_reporting_fault_19_is_an_ebpf_host(host_copy, scrape):
    """RHEL 7 kernels run either machinery; a failing connector shows neither BPF fds nor
    modules, so the fault it reports tells which machinery failed."""
    root = host_copy("healthy-kmod")
    modules = root / "proc/modules"
    modules.write_text("".join(line + "\n" for line in modules.read_text().splitlines()
                               if not line.startswith(("ampavflt", "ampfsm", "redirfs",
                                                       "ampnetworkflow"))))
    write_status(root, "Status: Connected\nMode: Degraded\nFaults: 1 Critical\nFault IDs: 19\n"
                       "ID 19 - Critical: SELinux policy is missing or disabled.\n")
    s = scrape(root)
    assert s.value("cisco_amp_monitoring_generation", generation="ebpf_headers") == 1
    # eBPF on a kernel without BTF needs kernel-devel: its absence is a real finding too.
    assert s.found_causes() == {(19, "selinux_module_missing"), (11, "kernel_headers_missing")}
    release = (root / "proc/sys/kernel/osrelease").read_text().strip()
    (root / f"usr/src/kernels/{release}").mkdir(parents=True)
    build = root / f"lib/modules/{release}/build"
    if build.is_symlink():
        build.unlink()
    build.parent.mkdir(parents=True, exist_ok=True)
    build.symlink_to(f"/usr/src/kernels/{release}")
    assert scrape(root).found_causes() == {(19, "selinux_module_missing")}
    # The same host reporting fault 8 instead is a kernel-module host: modules are the cause.
    write_status(root, "Status: Connected\nMode: Degraded\nFaults: 1 Critical\nFault IDs: 8\n")
    s = scrape(root)
    assert s.value("cisco_amp_monitoring_generation", generation="kernel_modules") == 1
    assert s.value("cisco_amp_monitoring_machinery", subsystem="file",
                   machinery="kernel_modules") == 1
    # Network monitoring too (no module of it, no eBPF, a 3.10 kernel), and the policy that
    # was read turns device flow correlation on: its module missing is fault 9's cause.
    assert s.found_causes() == {(8, "ampavflt_not_loaded"), (8, "ampfsm_not_loaded"),
                                (9, "ampnetworkflow_not_loaded")}


def test_no_ampcli_run_when_the_connector_collector_is_off(host_copy, scrape):
    root = host_copy("healthy-ebpf-btf")
    marker = root / "ran"
    (root / "opt/cisco/amp/bin/ampcli").write_text(f"#!/bin/sh\ntouch {marker}\n")
    s = scrape(root, "--no-collector.connector")
    assert set(s.success().values()) == {1}
    assert not marker.exists()


def test_processes_half_gone_or_half_readable(host_copy, scrape):
    root = host_copy("healthy-ebpf-btf")
    # A PID listed whose files are already gone (it exited between listing and reading).
    (root / "proc/31337").mkdir()
    # A connector process whose statm and status cannot be had: only those figures go.
    (root / "proc/1302/statm").unlink()
    (root / "proc/1302/status").unlink()
    s = scrape(root)
    assert set(s.success().values()) == {1}
    assert s.value("cisco_amp_process_up", process="ampscansvc") == 1
    assert s.value("cisco_amp_process_resident_memory_bytes", process="ampscansvc") is None
    assert s.value("cisco_amp_process_resident_memory_bytes", process="ampdaemon") > 0
    assert s.value("cisco_amp_process_cpu_seconds_total", process="ampscansvc", mode="user") > 0
