"""Every example host of every distribution family reads right: how the connector
monitors it (per subsystem), the faults it reports, exactly the causes our checks find
(none on a healthy host), and `check`'s exit status. The table covers every host the
builder makes, so a new host cannot go untested."""

from __future__ import annotations

import pytest
from conftest import builder, run_exporter

KM, EB = "kernel_modules", "ebpf"
# host: (file machinery, network machinery, eBPF mode, {fault: severity}, causes found)
# (severity 3 critical, 2 major); None machinery: no connector to tell it from
EXPECTED: dict[str, tuple] = {
    # eBPF CO-RE (BTF, connector 1.25+)
    "healthy-ebpf-btf": (EB, EB, "core", {}, set()),
    "amzn2-kernel510-ebpf-core-healthy": (EB, EB, "core", {}, set()),
    "amzn2023-ebpf-core-healthy": (EB, EB, "core", {}, set()),
    "debian12-ebpf-core-healthy": (EB, EB, "core", {}, set()),
    "debian12-fault-16-backports-kernel": (EB, EB, "core", {16: 3}, set()),  # needs a list
    "ubuntu2204-fault-7-scan-failed": (EB, EB, "core", {7: 3}, {
        (7, "scan_service_not_running"), (7, "definitions_invalid")}),
    "ol8-uek7-fault-19-selinux-module-disabled": (EB, EB, "core", {19: 3},
                                                  {(19, "selinux_module_disabled")}),
    "ol8-uek7-ebpf-core-healthy": (EB, EB, "core", {}, set()),
    "ubuntu2204-ebpf-core-healthy": (EB, EB, "core", {}, set()),
    "rhel9-ebpf-core-no-selinux-module-healthy": (EB, EB, "core", {}, set()),
    "rhel9-ebpf-core-base-policy-rule-healthy": (EB, EB, "core", {}, set()),
    "amzn2023-fault-18-overloaded-major": (EB, EB, "core", {18: 2}, set()),
    "fault-5-scan-user": (EB, EB, "core", {5: 2}, {
        (5, "scan_user_missing"), (5, "scan_group_missing"), (5, "usergroups_disabled"),
        (5, "directory_mode_changed"), (5, "scan_service_as_root")}),
    "fault-6-scan-restarting": (EB, EB, "core", {6: 2}, set()),  # restarts: test_restarts
    "fault-7-scan-failed": (EB, EB, "core", {7: 3}, {
        (7, "scan_service_not_running"), (7, "low_memory"), (7, "definitions_invalid")}),
    "fault-16-incompatible-kernel": (EB, EB, "core", {16: 3}, set()),  # needs a list
    "fault-18-overloaded": (EB, EB, "core", {18: 3}, set()),
    "fault-19-selinux": (EB, EB, "core", {19: 3}, {(19, "selinux_module_disabled")}),
    "rhel9-fault-19-selinux-module-missing": (EB, EB, "core", {19: 3},
                                              {(19, "selinux_module_missing")}),
    "multi-fault": (EB, EB, "core", {7: 3, 23: 2}, {(7, "scan_service_not_running")}),
    # eBPF built against the kernel's headers
    "healthy-ebpf-headers": (EB, EB, "headers", {}, set()),
    "ol7-uek6-ebpf-headers-healthy": (EB, EB, "headers", {}, set()),
    "ubuntu1804-ebpf-headers-healthy": (EB, EB, "headers", {}, set()),
    "fault-11-kernel-headers": (EB, EB, "headers", {11: 3}, {(11, "kernel_headers_missing")}),
    "ol7-uek6-fault-11-kernel-headers": (EB, EB, "headers", {11: 3},
                                         {(11, "kernel_headers_missing")}),
    "ubuntu1804-fault-11-kernel-headers": (EB, EB, "headers", {11: 3},
                                           {(11, "kernel_headers_missing")}),
    # kernel modules (kernels before 4.15)
    "healthy-kmod": (KM, KM, "none", {}, set()),
    "rhel7-kmod-healthy": (KM, KM, "none", {}, set()),
    "ol7-uek5-kmod-healthy": (KM, KM, "none", {}, set()),
    "amzn2-kmod-healthy": (KM, KM, "none", {}, set()),
    "fault-8-file-monitoring": (KM, KM, "none", {8: 3}, {
        (8, "secure_boot_enabled"), (8, "ampavflt_not_loaded"), (8, "ampfsm_not_loaded")}),
    "amzn2-kmod-fault-8-ampfsm": (KM, KM, "none", {8: 3}, {(8, "ampfsm_not_loaded")}),
    "fault-9-network-monitoring": (KM, KM, "none", {9: 3}, {(9, "ampnetworkflow_not_loaded")}),
    "rhel7-kmod-fault-9-ampnetworkflow": (KM, KM, "none", {9: 3},
                                          {(9, "ampnetworkflow_not_loaded")}),
    # both: RHEL 7 with modules and eBPF programs
    "rhel7-kmod-ebpf-healthy": (KM, KM, "headers", {}, set()),
    "rhel7-kmod-ebpf-fault-19-no-selinux-module": (KM, KM, "headers", {19: 3},
                                                   {(19, "selinux_module_missing")}),
    "rhel7-ebpf-fault-8-secure-boot": (KM, EB, "headers", {8: 3}, {
        (8, "secure_boot_enabled"), (8, "ampavflt_not_loaded"), (8, "ampfsm_not_loaded")}),
    # the connector cannot be asked, or is not there
    "daemon-dead": (EB, EB, "core", None, set()),
    "ampcli-silent": (EB, EB, "headers", None, set()),
    "no-connector": (None, None, None, {}, set()),
}
FLAGS = {"ampcli-silent": ("--ampcli.timeout", "0.5")}
HEALTHY_CHECK = {n for n, (_, _, _, faults, causes) in EXPECTED.items()
                 if faults == {} and not causes and n != "no-connector"}


def test_the_table_covers_every_example_host():
    assert set(EXPECTED) == set(builder.HOSTS)


def one(s, metric: str, label: str, **labels) -> str | None:
    on = [dict(k)[label] for k, v in s.get(metric, {}).items()
          if v == 1 and all(dict(k).get(n) == want for n, want in labels.items())]
    assert len(on) <= 1, (metric, on)
    return on[0] if on else None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_host_reads_right(hosts, scrape, name):
    file, network, ebpf, faults, causes = EXPECTED[name]
    s = scrape(hosts[name], *FLAGS.get(name, ()))
    assert one(s, "cisco_amp_monitoring_machinery", "machinery", subsystem="file") == file
    assert one(s, "cisco_amp_monitoring_machinery", "machinery", subsystem="network") == network
    assert one(s, "cisco_amp_monitoring_ebpf", "mode") == ebpf
    active = {int(dict(k)["fault_id"]): s.value("cisco_amp_fault_severity", **dict(k))
              for k, v in s.get("cisco_amp_fault_active", {}).items() if v == 1}
    if faults is None:  # no answer from the connector: faults unknown, left out
        assert "cisco_amp_fault_active" not in s
    else:
        assert active == faults
    assert s.found_causes() == causes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_exits_0_only_on_healthy_hosts(hosts, name):
    result = run_exporter("check", "--path.rootfs", str(hosts[name]), *FLAGS.get(name, ()))
    assert result.returncode == (0 if name in HEALTHY_CHECK else 1), result.stdout
