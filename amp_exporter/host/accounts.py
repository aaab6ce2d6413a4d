"""Users, groups and login.defs, read from the host tree (not through NSS: the tree may
not be the host we run on, and LDAP users are not what the connector creates)."""

from __future__ import annotations

from typing import Optional

from amp_exporter.host.paths import HostPaths, parse_cached


def parse_colon_file(text: str) -> dict[str, list[str]]:
    """etc/passwd or etc/group -> {name: fields}. Comments, blanks and NIS '+' lines skipped."""
    entries = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", "+", "-")):
            continue
        fields = line.split(":")
        if len(fields) < 3 or not fields[0]:
            raise ValueError(f"not a passwd/group line: {line[:60]!r}")
        entries.setdefault(fields[0], fields)
    return entries


def users(paths: HostPaths) -> dict[str, list[str]]:
    return parse_cached(paths.root("etc", "passwd"), parse_colon_file, 16 << 20)


def groups(paths: HostPaths) -> dict[str, list[str]]:
    return parse_cached(paths.root("etc", "group"), parse_colon_file, 16 << 20)


def parse_login_defs(text: str) -> dict[str, str]:
    """etc/login.defs -> {KEY: value}; keys as written, upper case by convention."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        values[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return values


def usergroups_enabled(paths: HostPaths) -> Optional[bool]:
    """USERGROUPS_ENAB from login.defs; None when the file or the key is absent (shadow's
    default then applies, which creates the group)."""
    try:
        defs = parse_cached(paths.root("etc", "login.defs"), parse_login_defs)
    except FileNotFoundError:
        return None
    value = defs.get("USERGROUPS_ENAB")
    return None if value is None else value.lower() == "yes"
