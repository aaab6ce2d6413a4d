"""Faults 8, 9, 11 and 16: kernel modules, Secure Boot, headers, BTF, supported kernels."""

from __future__ import annotations

import fnmatch

from amp_exporter import connector_files, generation, linux
from amp_exporter.catalog import FAULTS_BY_ID
from amp_exporter.causes import CauseCollector, Findings
from amp_exporter.registry import CollectorError, gauge, host_error, register

# Always reported, 0 or 1, so dashboards and alerts see a module disappear.
REPORTED_MODULES = ("ampavflt", "ampfsm", "redirfs")


NAME = "kernel"
MODULE_LOADED = gauge(NAME, "cisco_amp_kernel_module_loaded",
                      "1 when the connector's kernel module is loaded (proc/modules).",
                      ("module",))
BTF = gauge(NAME, "cisco_amp_kernel_btf_available",
            "1 when the kernel exposes BTF (sys/kernel/btf/vmlinux), so eBPF CO-RE needs no "
            "headers.")
HEADERS = gauge(NAME, "cisco_amp_kernel_headers_installed",
                "1 when lib/modules/RELEASE/build resolves to the running kernel's headers.")
SECURE_BOOT = gauge(NAME, "cisco_amp_secure_boot_enabled",
                    "1 when UEFI Secure Boot is on (absent on a BIOS boot).")
GENERATION = gauge(NAME, "cisco_amp_monitoring_generation",
                   "1 for how the connector monitors this host: ebpf_core (BTF), ebpf_headers "
                   "(compiled against kernel headers) or kernel_modules.", ("generation",))


@register
class KernelCollector(CauseCollector):
    name = NAME
    help = ("Fault 8, 9, 11, 16 causes; connector kernel modules, BTF, Secure Boot, headers, "
            "monitoring generation.")
    fault_ids = (8, 9, 11, 16)

    def read(self):
        try:
            release = linux.kernel_release(self.paths)
            modules = linux.loaded_modules(self.paths)
            secure_boot = linux.secure_boot(self.paths)
            btf = linux.btf_available(self.paths)
        except OSError as exc:
            raise host_error(exc, "reading kernel facts") from exc
        except ValueError as exc:
            raise CollectorError("parse", str(exc)) from exc
        return release, modules, secure_boot, btf

    def evidence(self, release, modules, secure_boot, btf) -> list:
        loaded = MODULE_LOADED.family()
        for module in REPORTED_MODULES:
            loaded.add_metric([module], 1.0 if module in modules else 0.0)
        families = [
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
        gen = self.shared.generation()
        gen_family = GENERATION.family()
        for name in generation.GENERATIONS:
            gen_family.add_metric([name], 1.0 if name == gen else 0.0)
        evidence.append(gen_family)

        features = connector_files.policy_features(self.paths)
        findings: Findings = {}
        if gen == "kernel_modules":
            for fid in (8, 9):
                if not connector_files.feature_on(features, FAULTS_BY_ID[fid].extra[
                        "policy_feature"]):
                    continue
                if secure_boot:
                    findings[(fid, "secure_boot_enabled")] = (
                        "UEFI Secure Boot is on; the connector's modules are not signed for it")
                for module in generation.AMP_MODULES:
                    if module not in modules:
                        findings[(fid, f"{module}_not_loaded")] = (
                            f"{module} is not in proc/modules")
        if gen == "ebpf_headers" and not linux.headers_installed(self.paths, release):
            findings[(11, "kernel_headers_missing")] = (
                f"lib/modules/{release}/build does not resolve to the kernel's headers"
                + (" (no BTF)" if not btf else " (connector older than 1.25 needs headers)")
            )
        patterns = self.settings.supported_kernels
        any_feature = any(connector_files.feature_on(features, FAULTS_BY_ID[f].extra[
            "policy_feature"]) for f in (8, 9))
        if patterns and any_feature and not any(fnmatch.fnmatchcase(release, p)
                                                for p in patterns):
            findings[(16, "kernel_not_supported")] = (
                f"kernel {release} matches none of --check.supported-kernels")
        return findings, evidence
