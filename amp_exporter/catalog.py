"""The fault catalog: the single source of truth for every fault the exporter knows.

Collectors, `amp-exporter check`, the alert rules, the dashboards and the docs
all derive from FAULTS. Each fault lists the root causes that the exporter can
check on its own; a cause's `name` is the `cause` label of
`cisco_amp_fault_cause` and must never change once released.

Source: Cisco's table of Linux connector faults (shared/reference), restated in
our own words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

SEVERITY_LEVELS = {"none": 0, "minor": 1, "major": 2, "critical": 3}


@dataclass(frozen=True)
class Cause:
    """A root cause the exporter checks by itself, independently of the connector.

    The rule for a cause while its fault is NOT raised (an early warning), applied to every
    cause by causes.CauseCollector: only lasting evidence counts, a thing missing or off
    that stays so (a user, a mode, a definitions file, the headers, a policy module), and
    only where nothing the connector shows proves it harmless (BPF programs held under
    enforcing SELinux prove the policy allows them; loaded modules prove Secure Boot lets
    them load). A `momentary` finding (a process not running at this instant, memory low
    at this instant) is a cause only while the connector reports the fault.
    """

    name: str
    summary: str
    remedy: str
    momentary: bool = False

    @property
    def reads(self) -> str:
        """What the check looks at, for docs/faults.md."""
        return CAUSE_READS[self.name]


@dataclass(frozen=True)
class Fault:
    id: int
    title: str
    meaning: str
    impact: str
    actions: tuple[str, ...]
    logs: tuple[str, ...] = ()
    causes: tuple[Cause, ...] = ()
    # How an alert on this fault pages: critical wakes someone, warning waits for hours.
    alert_severity: str = "warning"
    # How long the fault must stay raised before a person is needed.
    alert_for: str = "5m"
    escalate: str = ""
    min_connector_version: Optional[str] = None
    extra: dict = field(default_factory=dict)

    @property
    def cause_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.causes)


DAEMON_LOG = "/var/log/cisco/ampdaemon.log"
SCANSVC_LOG = "/var/log/cisco/ampscansvc.log"
SCAN_USER = "cisco-amp-scan-svc"
SELINUX_MODULE = "cisco-secure-bpf"

_SECURE_BOOT = Cause(
    "secure_boot_enabled",
    "UEFI Secure Boot is on and the connector's module for this subsystem is not loaded: "
    "unsigned modules cannot load.",
    "Disable Secure Boot in the firmware, or move to a kernel (4.15+) where the connector "
    "uses eBPF.",
)
_FILE_CAUSES = (
    _SECURE_BOOT,
    Cause(
        "ampavflt_not_loaded",
        "Kernel module ampavflt (on-access file scanning, on redirfs) is not loaded where "
        "the connector watches files with its modules and file monitoring is on.",
        "Look in /var/log/messages for the load error; an incompatible kernel or a conflicting "
        "third-party module is the usual reason.",
    ),
    Cause(
        "ampfsm_not_loaded",
        "Kernel module ampfsm (file renames: copies and moves) is not loaded where the "
        "connector watches files with its modules and file monitoring is on.",
        "Look in /var/log/messages for the load error; on an unsupported kernel build a custom "
        "ampfsm module for it (connector 1.16.0+).",
    ),
)
_NETWORK_CAUSES = (
    _SECURE_BOOT,
    Cause(
        "ampnetworkflow_not_loaded",
        "Kernel module ampnetworkflow (socket send, receive, connect, accept: device flow "
        "correlation) is not loaded where the connector watches the network with its "
        "modules and device flow correlation is on.",
        "Look in /var/log/messages for the load error; an incompatible kernel or a conflicting "
        "third-party module is the usual reason.",
    ),
)

FAULTS: tuple[Fault, ...] = (
    Fault(
        id=5,
        title="Scan service user unavailable",
        meaning="The connector could not create the unprivileged user that runs file scans "
        "and scans as root instead.",
        impact="File scanning runs with more privilege than designed.",
        actions=(
            f"Check that user and group {SCAN_USER} exist; if they were removed or changed, "
            "reinstall the connector to recreate them.",
            "If /etc/login.defs sets USERGROUPS_ENAB no, set it to yes while the installer "
            "runs.",
            "Connector 1.15.1+: if another program changed the mode of /opt/cisco or a "
            "directory below it, set it back to 0755 and restart the connector.",
        ),
        logs=(DAEMON_LOG,),
        causes=(
            Cause("scan_user_missing", f"User {SCAN_USER} is missing from /etc/passwd.",
                  "Reinstall the connector to recreate the scan user."),
            Cause("scan_group_missing", f"Group {SCAN_USER} is missing from /etc/group.",
                  "Reinstall the connector to recreate the scan group."),
            Cause("usergroups_disabled", "/etc/login.defs sets USERGROUPS_ENAB no, which stops "
                  "the installer creating the scan user's group.",
                  "Set USERGROUPS_ENAB yes while the installer runs, then reinstall."),
            Cause("directory_mode_changed", "/opt/cisco or a connector directory below it is not "
                  "mode 0755.", "chmod 0755 the directory and restart the connector."),
            Cause("scan_service_as_root", "The scan service process runs as root.",
                  "Fix the scan user (see the other causes) and restart the connector."),
        ),
        alert_severity="warning",
        alert_for="15m",
        escalate="If the user exists and directories are 0755 but the fault stays after a "
        "connector restart, open a case with Cisco TAC with an ampsupport bundle.",
    ),
    Fault(
        id=6,
        title="Scan service restarting frequently",
        meaning="The file scan process kept failing and the connector restarted it.",
        impact="Scanning continues on a best-effort basis; some files may go unscanned.",
        actions=(
            "A file on the host may crash the scan engine: read "
            "/var/log/cisco/ampscansvc.log for the file being scanned when it failed.",
            "If the fault has not cleared 10 minutes after a connector restart, a person must "
            "investigate.",
        ),
        logs=(DAEMON_LOG, SCANSVC_LOG),
        causes=(
            Cause("scan_service_restarts", "The exporter saw the scan service restart at least "
                  "the configured number of times in the last 10 minutes.",
                  "Find the file that crashes the scan engine in ampscansvc.log; exclude it "
                  "or send it to Cisco TAC."),
        ),
        alert_severity="warning",
        alert_for="10m",
        escalate="Still raised 10 minutes after a connector restart: open a case with Cisco "
        "TAC, attaching ampscansvc.log.",
    ),
    Fault(
        id=7,
        title="Scan service failed to start",
        meaning="The file scan process could not start; the connector restarted to try to "
        "clear it.",
        impact="File scanning is disabled while the fault is raised.",
        actions=(
            "A newly installed definitions file (.cvd) that fails to load is the usual "
            "trigger; the connector deletes invalid .cvd files when it restarts.",
            "Check free memory against the connector's minimum system requirements.",
            "If a restart does not clear it, a person must investigate; if it returns on "
            "every definitions update, report it to Cisco TAC.",
        ),
        logs=(DAEMON_LOG, SCANSVC_LOG),
        causes=(
            Cause("scan_service_not_running", "The connector daemon runs but the scan service "
                  "process does not.", "Restart the connector; read ampscansvc.log if it "
                  "does not come back.", momentary=True),
            Cause("low_memory", "Available memory is below the configured minimum for the "
                  "scan service.", "Free memory or add memory to meet the connector's "
                  "minimum requirements.", momentary=True),
            Cause("definitions_invalid", "A definitions file (.cvd) is truncated or lacks a "
                  "valid header.", "Restart the connector so it removes the invalid files and "
                  "downloads them again."),
        ),
        alert_severity="critical",
        alert_for="10m",
        escalate="Not cleared by a connector restart, or back on every definitions update: "
        "open a case with Cisco TAC.",
    ),
    Fault(
        id=8,
        title="Real-time file system monitoring failed to start",
        meaning="The kernel module that watches file system activity is not loaded while the "
        "policy turns on \"Monitor file copies and moves\".",
        impact="File copy and move monitoring is unavailable.",
        actions=(
            "UEFI Secure Boot must be off for the connector's kernel modules.",
            "Otherwise read /var/log/messages: the ampavflt or ampfsm module may be "
            "incompatible with the running kernel or a third-party module.",
            "On a kernel the connector does not support, build a custom ampfsm module "
            "(connector 1.16.0+) or move to a supported kernel.",
        ),
        logs=("/var/log/messages",),
        causes=_FILE_CAUSES,
        alert_severity="critical",
        alert_for="10m",
        escalate="Secure Boot off and modules still failing: open a case with Cisco TAC "
        "with the kernel version and /var/log/messages.",
        extra={"policy_feature": "file_copy_move_monitoring", "subsystem": "file"},
    ),
    Fault(
        id=9,
        title="Real-time network monitoring failed to start",
        meaning="The kernel module that watches network activity (ampnetworkflow) is not "
        "loaded while the policy turns on \"Enable device flow correlation\". (Cisco's "
        "fault table repeats fault 8's text here and names the file modules; the network "
        "module is ampnetworkflow.)",
        impact="Device flow correlation (network monitoring) is unavailable.",
        actions=(
            "UEFI Secure Boot must be off for the connector's kernel modules.",
            "Otherwise read /var/log/messages: ampnetworkflow may be incompatible with the "
            "running kernel or a third-party module.",
            "On a kernel the connector does not support, move to a supported kernel or a "
            "connector that supports this one; on 4.15+ kernels the connector uses eBPF.",
        ),
        logs=("/var/log/messages",),
        causes=_NETWORK_CAUSES,
        alert_severity="critical",
        alert_for="10m",
        escalate="Secure Boot off and modules still failing: open a case with Cisco TAC "
        "with the kernel version and /var/log/messages.",
        extra={"policy_feature": "device_flow_correlation", "subsystem": "network"},
    ),
    Fault(
        id=11,
        title="Required kernel-level packages missing",
        meaning="The connector cannot build or load its eBPF programs because a package they "
        "need, usually the running kernel's headers, is missing.",
        impact="File, process and network monitoring is off: the host is unprotected.",
        actions=(
            "Install the headers of the running kernel: kernel-devel (Red Hat family, "
            "connector 1.13.0+), kernel-uek-devel (Oracle Linux UEK 6+, 1.18.0+), "
            "linux-headers-$(uname -r) (Debian family, 1.15.0+).",
            "Then restart the connector.",
            "Usual trigger: a kernel update booted without its headers package.",
        ),
        logs=(DAEMON_LOG,),
        causes=(
            Cause("kernel_headers_missing", "The running kernel's headers "
                  "(lib/modules/RELEASE/build) are missing on a host where the connector "
                  "compiles its eBPF programs against them (no BTF, or connector before 1.25).",
                  "Install the headers package for the running kernel and restart the "
                  "connector."),
        ),
        alert_severity="critical",
        alert_for="5m",
        escalate="Headers installed and the fault remains after a restart: open a case with "
        "Cisco TAC.",
    ),
    Fault(
        id=16,
        title="Incompatible kernel",
        meaning="The running kernel is not supported by the running connector while file copy "
        "monitoring or device flow correlation is on.",
        impact="The affected monitoring features are unavailable.",
        actions=(
            "Boot a kernel the connector supports, or upgrade the connector to a version that "
            "supports this kernel (see Cisco's OS compatibility list).",
        ),
        logs=(DAEMON_LOG,),
        causes=(
            Cause("kernel_not_supported", "The running kernel matches none of the supported "
                  "kernel patterns configured with --check.supported-kernels.",
                  "Boot a supported kernel or upgrade the connector."),
        ),
        alert_severity="critical",
        alert_for="10m",
        escalate="The kernel is on Cisco's compatibility list for this connector version: "
        "open a case with Cisco TAC.",
    ),
    Fault(
        id=18,
        title="Connector event monitoring overloaded",
        meaning="The host produces more system events than the connector can absorb; it "
        "watches only a smaller set of critical events until activity drops.",
        impact="Protection is limited while the fault is raised (Major: reduced event set; "
        "Critical: worse).",
        actions=(
            "Find the busiest processes (the exporter's event rates and top processes).",
            "If a busy process is benign and trusted, add it to the connector's process "
            "exclusions; that may clear the fault.",
            "If none is benign, investigate for malicious activity.",
            "Short overloads clear by themselves; if it keeps coming back with no cause "
            "found, size the host for its load.",
        ),
        logs=(DAEMON_LOG,),
        causes=(
            Cause("event_pressure_high", "System events arrive faster than the configured "
                  "capacity (--events.capacity) and have for longer than --events.pressure-for.",
                  "Look at the busiest commands (cisco_amp_process_event_rate); exclude a "
                  "benign one in the connector's policy, investigate an unknown one."),
        ),
        alert_severity="warning",
        alert_for="15m",
        escalate="Recurring with no benign or malicious cause found: the host needs more "
        "capacity, or Cisco TAC should review the connector's load.",
    ),
    Fault(
        id=19,
        title="SELinux policy missing or disabled",
        meaning="SELinux is enforcing and the policy does not let the connector load its "
        "eBPF programs, because the cisco-secure-bpf policy module is missing or disabled.",
        impact="The connector cannot monitor system activity.",
        actions=(
            "Install policycoreutils-python (policycoreutils-python-utils on RHEL 8+).",
            "Reinstall or upgrade the connector so that it installs cisco-secure-bpf again, "
            "or re-enable it with `semodule -e cisco-secure-bpf`.",
            "Or add `allow unconfined_service_t self:bpf { map_create map_read map_write "
            "prog_load prog_run };` to the policy by hand, then restart the connector.",
        ),
        logs=(DAEMON_LOG, "/var/log/audit/audit.log"),
        causes=(
            Cause("selinux_module_missing", f"SELinux is enforcing, the {SELINUX_MODULE} "
                  "policy module is not installed, and nothing shows the policy lets the "
                  "connector load eBPF (no BPF program held, no module granting the rule).",
                  "Reinstall the connector (with policycoreutils-python present) or add the "
                  "rule by hand."),
            Cause("selinux_module_disabled", f"SELinux is enforcing, the {SELINUX_MODULE} "
                  "policy module is installed but disabled, and nothing shows the policy lets "
                  "the connector load eBPF.",
                  f"semodule -e {SELINUX_MODULE}, then restart the connector."),
        ),
        alert_severity="critical",
        alert_for="5m",
        escalate="Module installed and enabled, fault still raised: check audit.log for bpf "
        "denials and open a case with Cisco TAC.",
    ),
)

# What each cause check looks at (paths relative to the host root), for docs/faults.md.
CAUSE_READS = {
    "scan_user_missing": "etc/passwd (the file, not NSS: the connector creates a local user).",
    "scan_group_missing": "etc/group.",
    "usergroups_disabled": "etc/login.defs USERGROUPS_ENAB; a cause only while the scan user or "
    "group is missing.",
    "directory_mode_changed": "modes of opt/cisco, opt/cisco/amp, opt/cisco/amp/bin (must be "
    "0755) and of the directories right below opt/cisco/amp (must not be group/world "
    "writable).",
    "scan_service_as_root": "proc/PID/status Uid of the ampscansvc process.",
    "scan_service_restarts": "new (PID, start time) identities of ampscansvc between "
    "collections, within --check.scan-restart-window, against --check.scan-restarts.",
    "scan_service_not_running": "proc: ampdaemon present, ampscansvc absent.",
    "low_memory": "proc/meminfo MemAvailable against --check.min-available-memory.",
    "definitions_invalid": "the 512-byte ClamAV header of each file matched by "
    "--check.definitions-glob (default opt/cisco/amp/clamav/*.cvd and similar).",
    "secure_boot_enabled": "sys/firmware/efi/efivars/SecureBoot-8be4df61-… (4 attribute bytes, "
    "then the value); where the fault's subsystem runs on the modules and the fault is "
    "raised or one of its modules is missing with the feature on.",
    "ampavflt_not_loaded": "proc/modules; where file monitoring runs on the modules, while "
    "fault 8 is raised or a policy that was read turns file copy monitoring on.",
    "ampfsm_not_loaded": "proc/modules; where file monitoring runs on the modules, while "
    "fault 8 is raised or a policy that was read turns file copy monitoring on.",
    "ampnetworkflow_not_loaded": "proc/modules; where network monitoring runs on the "
    "module, while fault 9 is raised or a policy that was read turns device flow "
    "correlation on.",
    "kernel_headers_missing": "proc/sys/kernel/osrelease, then lib/modules/RELEASE/build "
    "resolved inside the root; where eBPF is built against headers (no "
    "sys/kernel/btf/vmlinux, or a connector before 1.25 per opt/cisco/amp/etc/global.xml), "
    "or fault 11 is raised.",
    "kernel_not_supported": "proc/sys/kernel/osrelease against --check.supported-kernels globs; "
    "no cause when none are given, nor unless fault 16 is raised or a policy that was read "
    "turns file copy monitoring or device flow correlation on.",
    "selinux_module_missing": "sys/fs/selinux/enforce (else etc/selinux/config), then the module "
    "store var/lib/selinux/TYPE/active/modules/*/cisco-secure-bpf (RHEL 8+) or "
    "etc/selinux/TYPE/... (RHEL 7); where eBPF is used or tried. Not while fault 19 is clear "
    "and the connector holds BPF programs or an enabled module's CIL grants the rule.",
    "event_pressure_high": "event rates counted in the kernel by eBPF tracepoints (or, as a "
    "lower bound, forks from proc/stat), over --events.window, against --events.capacity; "
    "sustained for --events.pressure-for.",
    "selinux_module_disabled": "the module store's active/modules/disabled/cisco-secure-bpf "
    "marker (semodule -d); as selinux_module_missing.",
}

FAULTS_BY_ID: dict[int, Fault] = {f.id: f for f in FAULTS}

@dataclass(frozen=True)
class ConnectorState:
    """What the exporter can tell about the connector before any fault: is it there, does
    its daemon run, does it answer. `name` is the `state` label of cisco_amp_connector_state
    and never changes once released; `check` prints `headline` first and `next_step` after
    it, the runbooks restate both."""

    name: str
    meaning: str
    headline: str
    next_step: str
    # An alert pages on this state (None: no alert of its own).
    alert: Optional[str] = None


# The connector's own service: systemd unit cisco-amp.service; upstart job cisco-amp on
# RHEL/CentOS 6 (its installer log shows "init: cisco-amp pre-start").
_WHY_STOPPED = ("systemctl status cisco-amp, journalctl -u cisco-amp and "
                f"{DAEMON_LOG} (upstart: /var/log/messages)")

CONNECTOR_STATES: tuple[ConnectorState, ...] = (
    ConnectorState(
        "answering",
        "The connector daemon answers `ampcli status`: its faults below are its own report.",
        "The connector answers.", ""),
    ConnectorState(
        "not_installed",
        "No connector is installed under the host root (no opt/cisco/amp/bin/ampdaemon).",
        "NOT PROTECTED: no Cisco Secure Endpoint connector is installed on this host.",
        "Install the connector if this host should be protected (package "
        "ciscoampconnector); if it should not, stop monitoring it with amp-exporter."),
    ConnectorState(
        "daemon_not_running",
        "The connector is installed but no ampdaemon process runs, and ampcli gets no "
        "answer: nothing monitors or protects the host.",
        "CRITICAL: the connector daemon (ampdaemon) is not running; this host is unprotected.",
        "Start it with systemctl start cisco-amp (upstart: initctl start cisco-amp); why it "
        f"stopped: {_WHY_STOPPED}.",
        alert="ConnectorDaemonNotRunning"),
    ConnectorState(
        "not_answering",
        "ampdaemon runs but `ampcli status` does not answer (it timed out, failed, or printed "
        "something that is not a status): the daemon may be hung, and whether it protects "
        "the host cannot be told.",
        "CRITICAL: the connector daemon runs but does not answer `ampcli status`; its "
        "protection cannot be confirmed.",
        f"Run /opt/cisco/amp/bin/ampcli status by hand and read {DAEMON_LOG}; if it stays "
        "silent, restart it with systemctl restart cisco-amp (upstart: initctl restart "
        "cisco-amp).",
        alert="ConnectorNotAnswering"),
    ConnectorState(
        "unknown",
        "amp-exporter may not run ampcli (permission denied), so it cannot ask the connector.",
        "UNKNOWN: amp-exporter cannot ask the connector (it may not run ampcli).",
        "Run `amp-exporter check` as root, or give the exporter's user the right to run "
        "ampcli; in a container reading the host at --path.rootfs, it needs "
        "CAP_SYS_CHROOT to run ampcli in the host's root (docs/security.md)."),
)
CONNECTOR_STATES_BY_NAME: dict[str, ConnectorState] = {s.name: s for s in CONNECTOR_STATES}



def fault(fault_id: int) -> Optional[Fault]:
    return FAULTS_BY_ID.get(fault_id)


def all_causes() -> list[tuple[int, Cause]]:
    """Every (fault_id, cause) pair the exporter checks, in catalog order."""
    return [(f.id, c) for f in FAULTS for c in f.causes]


def severity_level(word: str) -> Optional[int]:
    """'Major' -> 2. None for a word the catalog does not know."""
    return SEVERITY_LEVELS.get(word.strip().lower())
