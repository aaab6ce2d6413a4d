"""Fault 19 (SELinux policy missing or disabled): enforcing mode and the cisco-secure-bpf
policy module, where the connector uses or tries eBPF and nothing shows the policy already
lets it (BPF programs held under enforcing mode, or an enabled module granting the rule:
the base policy or one added by hand, as Cisco's fault text allows)."""

from __future__ import annotations

from amp_exporter.catalog import SELINUX_MODULE
from amp_exporter.causes import CauseCollector, Findings
from amp_exporter.host import selinux
from amp_exporter.registry import CollectorError, gauge, host_error, register

NAME = "selinux"
ENFORCING = gauge(NAME, "cisco_amp_selinux_enforcing", "1 when SELinux is enabled and enforcing.")
RULE = gauge(NAME, "cisco_amp_selinux_bpf_rule_present",
             "1 when an enabled module of the SELinux policy store (base policy, a module "
             "added by hand, cisco-secure-bpf) grants unconfined_service_t the bpf permissions "
             "the connector needs (absent without SELinux).")


@register
class SELinuxCollector(CauseCollector):
    name = NAME
    help = ("Fault 19 causes: SELinux enforcing without an enabled cisco-secure-bpf module, "
            "where nothing shows the policy allows the connector's eBPF.")
    fault_ids = (19,)

    def state(self):
        try:
            return selinux.state(self.paths)
        except OSError as exc:
            raise host_error(exc, "reading SELinux state") from exc
        except ValueError as exc:
            raise CollectorError("parse", str(exc)) from exc

    def rule_present(self, st) -> bool:
        try:
            return selinux.policy_grants_bpf(self.paths, st.policy_type)
        except OSError as exc:
            raise host_error(exc, "reading the SELinux module store") from exc

    def evidence(self, st, rule) -> list:
        families = [ENFORCING.single(bool(st and st.enforcing))]
        if rule is not None:
            families.append(RULE.single(rule))
        return families

    def evidence_without_connector(self):
        st = self.state()
        return self.evidence(st, None if st is None else self.rule_present(st))

    def check(self):
        st = self.state()
        findings: Findings = {}
        if st is None:
            return findings, self.evidence(st, None)
        rule = self.rule_present(st)
        evidence = self.evidence(st, rule)
        if not st.enforcing:
            return findings, evidence
        reported = 19 in self.shared.reported_faults()
        if not reported:
            # The connector's own word is absent: a cause needs eBPF in use or tried, and
            # nothing showing the policy allows it.
            used = self.shared.machinery()
            if used.ebpf == "none":
                return findings, evidence  # no eBPF here, so no bpf rule needed
            if used.bpf_programs_held or rule:
                return findings, evidence
        try:
            module = selinux.module_state(self.paths, st.policy_type, SELINUX_MODULE)
        except OSError as exc:
            raise host_error(exc, "reading the SELinux module store") from exc
        if module == "missing":
            findings[(19, "selinux_module_missing")] = (
                f"SELinux enforcing ({st.policy_type}) and no {SELINUX_MODULE} module in the "
                "module store" + ("" if reported else ", no BPF program held and no module "
                                  "granting the rule"))
        elif module == "disabled":
            findings[(19, "selinux_module_disabled")] = (
                f"SELinux enforcing and {SELINUX_MODULE} is disabled (semodule -d)")
        return findings, evidence
