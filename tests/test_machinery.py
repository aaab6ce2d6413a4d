"""The per-subsystem model of how the connector monitors a host (machinery.py), and the
causes it lets through, on the cases public sources describe: RHEL 7 mixing modules and
eBPF, the 4.15 boundary, the connector's own word over every inference, and healthy hosts
that must show no cause."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import run_exporter

from amp_exporter.host.machinery import Evidence, decide

RHEL7 = (3, 10)


def evidence(**kw) -> Evidence:
    base = dict(kernel=(5, 14), btf=True, connector_version=(1, 26, 0), bpf_programs_held=8,
                modules_loaded=frozenset(), reported_faults=frozenset())
    base.update(kw)
    return Evidence(**base)


@pytest.mark.parametrize(("case", "kw", "expected"), [
    ("RHEL 9 healthy", {}, ("ebpf", "ebpf", "core")),
    ("Ubuntu 18.04, 4.15, no BTF: eBPF only, built against headers",
     dict(kernel=(4, 15), btf=False), ("ebpf", "ebpf", "headers")),
    ("4.14 (Amazon Linux 2) with every module", dict(
        kernel=(4, 14), btf=False, bpf_programs_held=0,
        modules_loaded=frozenset({"ampfsm", "ampavflt", "redirfs", "ampnetworkflow"})),
     ("kernel_modules", "kernel_modules", "none")),
    ("RHEL 7: file modules, eBPF for the rest", dict(
        kernel=RHEL7, btf=False, modules_loaded=frozenset({"ampfsm", "ampavflt", "redirfs"})),
     ("kernel_modules", "ebpf", "headers")),
    ("RHEL 7 holding BPF programs and reporting fault 8: its word wins", dict(
        kernel=RHEL7, btf=False, reported_faults=frozenset({8})),
     ("kernel_modules", "ebpf", "headers")),
    ("RHEL 7 with modules reporting fault 19: eBPF was tried", dict(
        kernel=RHEL7, btf=False, bpf_programs_held=0,
        modules_loaded=frozenset({"ampfsm", "ampavflt", "redirfs", "ampnetworkflow"}),
        reported_faults=frozenset({19})),
     ("kernel_modules", "kernel_modules", "headers")),
    ("RHEL 7, nothing loaded, nothing held: the modules", dict(
        kernel=RHEL7, btf=False, bpf_programs_held=0),
     ("kernel_modules", "kernel_modules", "none")),
    ("BTF but a connector before 1.25 builds against headers",
     dict(connector_version=(1, 24, 2)), ("ebpf", "ebpf", "headers")),
    ("BTF, version unknown: CO-RE", dict(connector_version=None), ("ebpf", "ebpf", "core")),
    ("fault 11 on a BTF host: it says it needs headers",
     dict(bpf_programs_held=0, reported_faults=frozenset({11})), ("ebpf", "ebpf", "headers")),
])
def test_each_subsystem_is_decided_on_its_own_evidence(case, kw, expected):
    m = decide(evidence(**kw))
    assert (m.file, m.network, m.ebpf) == expected, (case, m.why)
    assert set(m.why) == {"file", "network", "ebpf"} and all(m.why.values())


def test_the_old_generation_summary_follows_the_file_subsystem():
    assert decide(evidence()).generation == "ebpf_core"
    assert decide(evidence(kernel=RHEL7, btf=False, modules_loaded=frozenset(
        {"ampfsm"}))).generation == "kernel_modules"
    assert decide(evidence(kernel=(4, 19), btf=False)).generation == "ebpf_headers"


# -- the causes these decisions let through, on changed copies of the example hosts ----------

def write_status(root, fault_ids: tuple[int, ...] = ()) -> None:
    lines = ["Status: Connected", "Mode: " + ("Degraded" if fault_ids else "Normal"),
             "Faults: " + (f"{len(fault_ids)} Critical" if fault_ids else "None"),
             "Fault IDs: " + (", ".join(map(str, fault_ids)) or "None")]
    lines += [f"ID {f} - Critical: fault {f}." for f in fault_ids]
    (root / "opt/cisco/amp/bin/ampcli").write_text(
        "#!/bin/sh\ncat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")


def set_modules(root, keep: set[str]) -> None:
    """proc/modules without the connector's modules that KEEP does not name."""
    ours = ("ampfsm", "ampavflt", "redirfs", "ampnetworkflow")
    modules = root / "proc/modules"
    lines = [line for line in modules.read_text().splitlines()
             if not line.startswith(ours) or line.split()[0] in keep]
    modules.write_text("".join(line + "\n" for line in lines))


def set_policy(root, file: str, nfm: str) -> None:
    policy = root / "opt/cisco/amp/etc/policy.xml"
    text = re.sub(r"<file>\d</file>", f"<file>{file}</file>", policy.read_text())
    policy.write_text(re.sub(r"<nfm><enable>\d</enable>", f"<nfm><enable>{nfm}</enable>", text))


def test_rhel7_with_modules_reporting_fault_19_finds_the_selinux_module(host_copy, scrape):
    root = host_copy("healthy-kmod")  # CentOS 7, SELinux enforcing, no cisco-secure-bpf
    write_status(root, (19,))
    s = scrape(root)
    assert (19, "selinux_module_missing") in s.found_causes()
    assert s.value("cisco_amp_monitoring_machinery", subsystem="file",
                   machinery="kernel_modules") == 1
    assert s.value("cisco_amp_monitoring_ebpf", mode="headers") == 1


def test_rhel7_with_bpf_programs_reporting_fault_8_keeps_its_module_causes(host_copy, scrape):
    root = host_copy("fault-8-file-monitoring")  # Secure Boot on, ampfsm/ampavflt missing
    # ... and the connector holds BPF programs (eBPF for what is not file monitoring)
    fd = root / "proc/1187/fd"
    fdinfo = root / "proc/1187/fdinfo"
    (fd / "40").symlink_to("anon_inode:bpf-prog")
    (fdinfo / "40").write_text("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n"
                               "prog_type:\t2\nprog_jited:\t1\nprog_tag:\t0123456789abcdef\n"
                               "memlock:\t4096\nprog_id:\t77\n")
    s = scrape(root)
    assert s.value("cisco_amp_bpf_programs", process="ampdaemon") == 1
    assert s.value("cisco_amp_monitoring_machinery", subsystem="file",
                   machinery="kernel_modules") == 1
    assert {(8, "secure_boot_enabled"), (8, "ampfsm_not_loaded"),
            (8, "ampavflt_not_loaded")} <= s.found_causes()


def test_a_missing_module_is_no_cause_while_its_feature_is_off_or_unknown(host_copy, scrape):
    root = host_copy("healthy-kmod")
    set_modules(root, {"ampfsm", "ampavflt", "redirfs"})  # no ampnetworkflow
    set_policy(root, file="1", nfm="0")  # device flow correlation off
    assert not {c for c in scrape(root).found_causes() if c[0] == 9}
    (root / "opt/cisco/amp/etc/policy.xml").unlink()  # the policy cannot be read
    set_modules(root, set())
    assert not {c for c in scrape(root).found_causes() if c[0] in (8, 9)}
    write_status(root, (9,))  # the connector's word: the feature is on
    assert {c for c in scrape(root).found_causes() if c[0] in (8, 9)} == {
        (9, "ampnetworkflow_not_loaded")}


def test_a_scan_service_not_running_this_instant_is_no_cause_of_a_clear_fault(host_copy, scrape):
    root = host_copy("healthy-ebpf-btf")
    shutil.rmtree(root / "proc/1302")  # ampscansvc gone for a moment
    s = scrape(root)
    assert s.value("cisco_amp_process_up", process="ampscansvc") == 0
    assert s.found_causes() == set()
    write_status(root, (7,))
    assert (7, "scan_service_not_running") in scrape(root).found_causes()


def test_programs_held_under_enforcing_selinux_prove_the_policy_allows_them(host_copy, scrape):
    root = host_copy("healthy-ebpf-btf")  # RHEL 9, enforcing, holds its programs
    store = root / "var/lib/selinux/targeted/active/modules"
    for path in sorted((store / "400/cisco-secure-bpf").iterdir()):
        path.unlink()
    (store / "400/cisco-secure-bpf").rmdir()
    s = scrape(root)
    assert s.value("cisco_amp_selinux_enforcing") == 1
    assert s.found_causes() == set()
    result = run_exporter("check", "--path.rootfs", str(root))
    assert result.returncode == 0, result.stdout
    # the connector reports fault 19 after all: its word wins over the programs
    write_status(root, (19,))
    assert (19, "selinux_module_missing") in scrape(root).found_causes()


RULE = b"(allow unconfined_service_t self (bpf (map_create map_read map_write prog_load prog_run)))"


@pytest.mark.parametrize(("cil", "grants"), [
    (RULE, True),
    (b"(typeattribute x)\n" * 100_000 + RULE + b"\n(typeattribute y)\n", True),
    (b"(allow unconfined_service_t self (bpf (map_create prog_load)))", False),  # too few
    (b"(allow unconfined_t self (bpf (map_create map_read map_write prog_load prog_run)))",
     False),  # another domain
    (b"(typeattribute x)\n", False),
])
def test_the_bpf_rule_is_found_in_plain_and_bzip2_cil(cil, grants):
    import bz2

    from amp_exporter.host.selinux import cil_grants_bpf

    assert cil_grants_bpf(cil) is grants
    assert cil_grants_bpf(bz2.compress(cil)) is grants


def test_a_bzip2_cil_cut_short_is_refused():
    import bz2

    from amp_exporter.host.selinux import cil_grants_bpf

    with pytest.raises(ValueError):
        cil_grants_bpf(bz2.compress(RULE * 1000)[:40])


def test_selinux_module_missing_is_a_cause_only_where_nothing_shows_the_policy_allows_bpf(
        host_copy, scrape):
    # RHEL 8, enforcing, cisco-secure-bpf disabled, no BPF program held, fault 19 cleared
    root = host_copy("fault-19-selinux")
    write_status(root)
    assert (19, "selinux_module_disabled") in scrape(root).found_causes()
    # the base policy grants the rule: no cause while the connector reports nothing
    import bz2

    cil = root / "var/lib/selinux/targeted/active/modules/100/base/cil"
    data = cil.read_bytes()
    packed = data.startswith(b"BZh")  # as libsemanage stores it
    text = (bz2.decompress(data) if packed else data) + b"\n" + RULE + b"\n"
    cil.write_bytes(bz2.compress(text) if packed else text)
    s = scrape(root)
    assert s.value("cisco_amp_selinux_bpf_rule_present") == 1
    assert s.found_causes() == set()
    write_status(root, (19,))  # ... but its word that the policy blocks it wins
    assert (19, "selinux_module_disabled") in scrape(root).found_causes()


def test_the_policy_store_is_read_again_after_a_transaction(host_copy):
    """One answer per store transaction: semodule -d (a marker in modules/disabled) or a
    new commit is seen at once, in the same process."""
    from amp_exporter.host import selinux
    from amp_exporter.host.paths import HostPaths

    root = host_copy("healthy-ebpf-btf")  # cisco-secure-bpf installed and enabled
    paths = HostPaths(str(root))
    assert selinux.policy_grants_bpf(paths, "targeted")
    assert selinux.policy_grants_bpf(paths, "targeted")  # cached
    marker = root / "var/lib/selinux/targeted/active/modules/disabled/cisco-secure-bpf"
    marker.write_text("")
    assert not selinux.policy_grants_bpf(paths, "targeted")
    marker.unlink()
    assert selinux.policy_grants_bpf(paths, "targeted")
