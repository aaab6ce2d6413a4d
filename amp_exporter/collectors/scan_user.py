"""Fault 5 (scan service user unavailable): the scan user, login.defs, directory modes."""

from __future__ import annotations

import os
import stat

from amp_exporter.catalog import SCAN_USER
from amp_exporter.causes import CauseCollector, Findings
from amp_exporter.host import accounts
from amp_exporter.host.processes import SCAN_SERVICE
from amp_exporter.registry import CollectorError, host_error, register

# The installer makes these 0755; another program changing them raises fault 5.
EXACT_0755 = ("opt/cisco", "opt/cisco/amp", "opt/cisco/amp/bin")
# Below them the connector's own modes are not public: flag only what no installer sets,
# a directory that others (group or world) may write to.
SCANNED_BELOW = "opt/cisco/amp"


@register
class ScanUserCollector(CauseCollector):
    name = "scan_user"
    help = "Fault 5 causes: scan user and group, USERGROUPS_ENAB, directory modes."
    fault_ids = (5,)

    def check(self):
        findings: Findings = {}
        try:
            users = accounts.users(self.paths)
            groups = accounts.groups(self.paths)
            usergroups = accounts.usergroups_enabled(self.paths)
        except OSError as exc:
            raise host_error(exc, "reading etc/passwd, etc/group, etc/login.defs") from exc
        except ValueError as exc:
            raise CollectorError("parse", str(exc)) from exc
        missing = []
        if SCAN_USER not in users:
            findings[(5, "scan_user_missing")] = f"user {SCAN_USER} not in etc/passwd"
            missing.append("user")
        if SCAN_USER not in groups:
            findings[(5, "scan_group_missing")] = f"group {SCAN_USER} not in etc/group"
            missing.append("group")
        if usergroups is False and missing:
            findings[(5, "usergroups_disabled")] = (
                "etc/login.defs sets USERGROUPS_ENAB no and the scan " + " and ".join(missing)
                + (" are" if len(missing) > 1 else " is") + " missing"
            )
        bad = self.bad_directory_modes()
        if bad:
            findings[(5, "directory_mode_changed")] = "; ".join(bad)
        root_scans = [p.pid for p in self.shared.processes.snapshot().by_name(SCAN_SERVICE)
                      if p.uid == 0]
        if root_scans:
            findings[(5, "scan_service_as_root")] = (
                f"{SCAN_SERVICE} runs as root (pid {', '.join(map(str, root_scans))})"
            )
        return findings, []

    def bad_directory_modes(self) -> list[str]:
        bad = []
        for rel in EXACT_0755:
            try:
                mode = stat.S_IMODE(os.stat(self.paths.root(rel)).st_mode)
            except FileNotFoundError:
                continue
            if mode != 0o755:
                bad.append(f"/{rel} is {mode:04o}, not 0755")
        try:
            entries = list(os.scandir(self.paths.root(SCANNED_BELOW)))
        except OSError:
            entries = []
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
            except OSError:
                continue
            rel = f"{SCANNED_BELOW}/{entry.name}"
            if rel not in EXACT_0755 and mode & 0o022:
                bad.append(f"/{rel} is {mode:04o} (writable by group or others)")
        return sorted(bad)
