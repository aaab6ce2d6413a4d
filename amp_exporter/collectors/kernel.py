"""Faults 8, 9, 11 and 16: the running kernel's release, kernel modules per subsystem,
Secure Boot, headers, BTF, supported kernels; how the connector monitors each subsystem
(machinery.py)."""

from __future__ import annotations

import fnmatch

from amp_exporter.catalog import FAULTS_BY_ID
from amp_exporter.causes import CauseCollector, Findings
from amp_exporter.host import connector_files, linux, machinery
from amp_exporter.registry import gauge, register

# Always reported, 0 or 1, so dashboards and alerts see a module disappear.
REPORTED_MODULES = machinery.CONNECTOR_MODULES


NAME = "kernel"
KERNEL_INFO = gauge(NAME, "cisco_amp_kernel_info",
                    "The running kernel's release, from proc/sys/kernel/osrelease (always 1; "
                    "faults 11 and 16 hinge on it). Absent when the release cannot be read: "
                    "the kernel collector then fails (amp_exporter_scrape_collector_success "
                    "0).", ("release",))
MODULE_LOADED = gauge(NAME, "cisco_amp_kernel_module_loaded",
                      "1 when the connector's kernel module is loaded (proc/modules): ampfsm "
                      "and ampavflt (on redirfs) watch files, ampnetworkflow the network.",
                      ("module",))
BTF = gauge(NAME, "cisco_amp_kernel_btf_available",
            "1 when the kernel exposes BTF (sys/kernel/btf/vmlinux), so eBPF CO-RE needs no "
            "headers.")
HEADERS = gauge(NAME, "cisco_amp_kernel_headers_installed",
                "1 when lib/modules/RELEASE/build resolves to the running kernel's headers.")
SECURE_BOOT = gauge(NAME, "cisco_amp_secure_boot_enabled",
                    "1 when UEFI Secure Boot is on (absent on a BIOS boot).")
MACHINERY = gauge(NAME, "cisco_amp_monitoring_machinery",
                  "1 for the machinery the connector uses, or tries, for each subsystem: "
                  "file and network monitoring on kernel_modules or ebpf "
                  "(docs/monitoring-model.md).", ("subsystem", "machinery"))
EBPF = gauge(NAME, "cisco_amp_monitoring_ebpf",
             "1 for how the connector builds its eBPF programs: core (BTF, connector 1.25+), "
             "headers (against the running kernel's headers), none (it uses no eBPF here).",
             ("mode",))
GENERATION = gauge(NAME, "cisco_amp_monitoring_generation",
                   "Deprecated one-word summary of cisco_amp_monitoring_machinery: the file "
                   "subsystem's machinery, kernel_modules, or ebpf_core / ebpf_headers.",
                   ("generation",))
GENERATIONS = ("ebpf_core", "ebpf_headers", "kernel_modules")


@register
class KernelCollector(CauseCollector):
    name = NAME
    help = ("Fault 8, 9, 11, 16 causes; the running kernel's release, connector kernel "
            "modules, BTF, Secure Boot, headers, the machinery of each monitoring subsystem.")
    fault_ids = (8, 9, 11, 16)

    def read(self):
        k = self.shared.kernel()
        return k.release, k.modules, k.secure_boot, k.btf

    def evidence(self, release, modules, secure_boot, btf) -> list:
        loaded = MODULE_LOADED.family()
        for module in REPORTED_MODULES:
            loaded.add_metric([module], 1.0 if module in modules else 0.0)
        families = [
            KERNEL_INFO.single(1, release),
            loaded,
            BTF.single(btf),
            HEADERS.single(linux.headers_installed(self.paths, release)),
        ]
        if secure_boot is not None:
            families.append(SECURE_BOOT.single(secure_boot))
        return families

    def evidence_without_connector(self):
        return self.evidence(*self.read())

    def check(self):
        release, modules, secure_boot, btf = self.read()
        evidence = self.evidence(release, modules, secure_boot, btf)
        used = self.shared.machinery()
        evidence += machinery_families(used)
        reported = self.shared.reported_faults()
        features = connector_files.policy_features(self.paths)
        findings: Findings = {}
        for subsystem, fid in machinery.FAULT_BY_SUBSYSTEM.items():
            if used.subsystem(subsystem) != "kernel_modules":
                continue
            # A module is loaded only while its feature is on: its absence is a cause while
            # the connector reports the fault (its word that the feature is on) or a policy
            # that was actually read turns the feature on, never on a guess.
            feature = FAULTS_BY_ID[fid].extra["policy_feature"]
            if fid not in reported and features.get(feature) is not True:
                continue
            missing = [m for m in machinery.MODULES_BY_SUBSYSTEM[subsystem] if m not in modules]
            for module in missing:
                findings[(fid, f"{module}_not_loaded")] = f"{module} is not in proc/modules"
            if secure_boot and (missing or fid in reported):
                findings[(fid, "secure_boot_enabled")] = (
                    "UEFI Secure Boot is on; the connector's modules are not signed for it")
        if ((used.ebpf == "headers" or 11 in reported)
                and not linux.headers_installed(self.paths, release)):
            findings[(11, "kernel_headers_missing")] = (
                f"lib/modules/{release}/build does not resolve to the kernel's headers"
                + (" (no BTF)" if not btf else " (connector older than 1.25 needs headers)"
                   if used.ebpf == "headers" else " (the connector reports fault 11)"))
        # Fault 16 matters only while a feature it hinges on is on: known from the
        # connector's word or a policy that was read, never guessed.
        patterns = self.settings.supported_kernels
        any_feature = 16 in reported or any(
            features.get(FAULTS_BY_ID[f].extra["policy_feature"]) is True for f in (8, 9))
        if patterns and any_feature and not any(fnmatch.fnmatchcase(release, p)
                                                for p in patterns):
            findings[(16, "kernel_not_supported")] = (
                f"kernel {release} matches none of --check.supported-kernels")
        return findings, evidence


def machinery_families(used: machinery.Machinery) -> list:
    by_subsystem = MACHINERY.family()
    for subsystem in machinery.SUBSYSTEMS:
        for name in machinery.MACHINERY:
            by_subsystem.add_metric([subsystem, name],
                                    1.0 if used.subsystem(subsystem) == name else 0.0)
    ebpf = EBPF.family()
    for mode in machinery.EBPF_MODES:
        ebpf.add_metric([mode], 1.0 if used.ebpf == mode else 0.0)
    generation = GENERATION.family()
    for name in GENERATIONS:
        generation.add_metric([name], 1.0 if used.generation == name else 0.0)
    return [by_subsystem, ebpf, generation]
