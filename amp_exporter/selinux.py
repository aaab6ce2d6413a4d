"""SELinux state and the policy module store, read from the host tree.

The module store moved between releases (libsemanage): `etc/selinux/TYPE/active/modules`
on RHEL 7, `var/lib/selinux/TYPE/active/modules` on RHEL 8+ and Fedora. Modules sit
under a priority directory (`100`, `400`, ...); `semodule -d NAME` leaves an empty
file `active/modules/disabled/NAME`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from amp_exporter.hostpaths import HostPaths, parse_cached, read_first_line

STORE_ROOTS = ("var/lib/selinux", "etc/selinux")


@dataclass
class SELinuxState:
    enforcing: bool
    policy_type: str
    source: str  # "selinuxfs" (the live kernel) or "config" (etc/selinux/config)


def parse_config(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().upper()] = value.strip().strip("\"'")
    return values


def state(paths: HostPaths) -> Optional[SELinuxState]:
    """None when SELinux is absent (no selinuxfs and no config). ValueError when selinuxfs
    says neither 0 nor 1, or SELINUXTYPE cannot be a store's directory name."""
    try:
        config = parse_cached(paths.root("etc", "selinux", "config"), parse_config)
    except FileNotFoundError:
        config = {}
    policy_type = config.get("SELINUXTYPE", "targeted") or "targeted"
    if "/" in policy_type or "\0" in policy_type or policy_type in (".", ".."):
        # A NUL made module_state() raise ValueError, and a '/' would read another directory.
        raise ValueError(f"SELINUXTYPE {policy_type[:20]!r} is not a policy name")
    try:
        value = read_first_line(paths.sys("fs", "selinux", "enforce"))
        if value not in ("0", "1"):
            raise ValueError(f"selinux enforce is {value[:10]!r}")
        return SELinuxState(value == "1", policy_type, "selinuxfs")
    except FileNotFoundError:
        pass
    if not config:
        return None
    # No selinuxfs: the kernel runs without SELinux whatever the config says, unless the
    # tree is not the live host (a container without sys mounted): trust the config then.
    return SELinuxState(config.get("SELINUX", "").lower() == "enforcing", policy_type, "config")


def module_state(paths: HostPaths, policy_type: str, name: str) -> str:
    """'installed', 'disabled' or 'missing' for a policy module in any known store.

    Raises PermissionError when a store exists but cannot be read (its `active`
    directory is root-only): "missing" would then be a guess, not a finding.
    """
    for store in STORE_ROOTS:
        modules = paths.root(store, policy_type, "active", "modules")
        try:
            entries = os.listdir(modules)
        except FileNotFoundError:
            continue
        if os.path.exists(os.path.join(modules, "disabled", name)):
            return "disabled"
        for priority in entries:
            if priority.isdigit() and os.path.isdir(os.path.join(modules, priority, name)):
                return "installed"
    return "missing"
