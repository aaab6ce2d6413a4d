"""Fault 19 (SELinux policy missing or disabled): enforcing mode and the cisco-secure-bpf
policy module, on hosts where the connector loads eBPF programs."""

from __future__ import annotations

from amp_exporter import selinux
from amp_exporter.catalog import SELINUX_MODULE
from amp_exporter.causes import CauseCollector, Findings
from amp_exporter.registry import CollectorError, gauge, host_error, register

NAME = "selinux"
ENFORCING = gauge(NAME, "cisco_amp_selinux_enforcing", "1 when SELinux is enabled and enforcing.")


@register
class SELinuxCollector(CauseCollector):
    name = NAME
    help = "Fault 19 causes: SELinux enforcing without an enabled cisco-secure-bpf module."
    fault_ids = (19,)

    def state(self):
        try:
            return selinux.state(self.paths)
        except OSError as exc:
            raise host_error(exc, "reading SELinux state") from exc
        except ValueError as exc:
            raise CollectorError("parse", str(exc)) from exc

    def evidence(self, st) -> list:
        enforcing = bool(st and st.enforcing)
        return [ENFORCING.single(enforcing)]

    def evidence_without_connector(self):
        return self.evidence(self.state())

    def check(self):
        st = self.state()
        findings: Findings = {}
        if st is None or not st.enforcing:
            return findings, self.evidence(st)
        gen = self.shared.generation()
        if gen == "kernel_modules":
            return findings, self.evidence(st)  # no eBPF, so no bpf rule needed
        try:
            module = selinux.module_state(self.paths, st.policy_type, SELINUX_MODULE)
        except OSError as exc:
            raise host_error(exc, "reading the SELinux module store") from exc
        if module == "missing":
            findings[(19, "selinux_module_missing")] = (
                f"SELinux enforcing ({st.policy_type}) and no {SELINUX_MODULE} module in the "
                "module store")
        elif module == "disabled":
            findings[(19, "selinux_module_disabled")] = (
                f"SELinux enforcing and {SELINUX_MODULE} is disabled (semodule -d)")
        return findings, self.evidence(st)
