"""SELinux state and the policy module store, read from the host tree.

The module store moved between releases (libsemanage): `etc/selinux/TYPE/active/modules`
on RHEL 7, `var/lib/selinux/TYPE/active/modules` on RHEL 8+ and Fedora. Modules sit
under a priority directory (`100`, `400`, ...); `semodule -d NAME` leaves an empty
file `active/modules/disabled/NAME`.
"""

from __future__ import annotations

import bz2
import os
import re
from dataclasses import dataclass
from typing import Optional

from amp_exporter.host.paths import HostPaths, open_host_file, parse_cached, read_first_line

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


# The rule the connector needs (Cisco's fault 19 text), as CIL writes it in a module:
# (allow unconfined_service_t self (bpf (map_create map_read map_write prog_load prog_run)))
_BPF_RULE = re.compile(rb"\(\s*allow\s+unconfined_service_t\s+(?:self|unconfined_service_t)\s+"
                       rb"\(\s*bpf\s+\(([a-z_ \t\r\n]*)\)\s*\)\s*\)")
NEEDED_BPF_PERMISSIONS = frozenset({b"map_create", b"map_read", b"map_write", b"prog_load",
                                    b"prog_run"})
CIL_LIMIT = 256 << 20  # decompressed bytes scanned at most per module
_RAW_LIMIT = 64 << 20  # compressed bytes read at most per module
_CHUNK = 1 << 20  # scanned a piece at a time: a large base module never sits in memory whole
_granted: dict[str, tuple[tuple, bool]] = {}


def _pieces(data: bytes):
    """The CIL text of DATA in pieces: bzip2-compressed (as libsemanage stores modules)
    or plain. ValueError when it is not bzip2 after all, or passes CIL_LIMIT."""
    if not data.startswith(b"BZh"):
        for i in range(0, len(data), _CHUNK):
            yield data[i:i + _CHUNK]
        return
    decompressor, total, pending = bz2.BZ2Decompressor(), 0, data
    while not decompressor.eof:
        try:
            piece = decompressor.decompress(pending, _CHUNK)
        except (OSError, EOFError) as exc:
            raise ValueError(f"not bzip2: {exc}") from exc
        pending = b""  # handed over: the decompressor keeps what it has not used yet
        if not piece and decompressor.needs_input:
            raise ValueError("bzip2 data ends early")
        total += len(piece)
        if total > CIL_LIMIT:
            raise ValueError(f"CIL larger than {CIL_LIMIT} bytes")
        yield piece


def cil_grants_bpf(data: bytes) -> bool:
    """Whether CIL (bzip2-compressed or plain) allows unconfined_service_t every bpf
    permission the connector needs. ValueError as _pieces."""
    tail = b""
    for piece in _pieces(data):
        text = tail + piece
        for match in _BPF_RULE.finditer(text):
            if set(match.group(1).split()) >= NEEDED_BPF_PERMISSIONS:
                return True
        tail = text[-512:]  # a rule cut between two pieces is whole in the next text
    return False


_stores: dict[str, tuple[tuple, bool]] = {}
# Looked at first: where the rule usually is (a store holds hundreds of modules).
_LIKELY = ("cisco-secure-bpf", "base")


def policy_grants_bpf(paths: HostPaths, policy_type: str) -> bool:
    """Whether an enabled module of the policy store (the base policy, a rule added by
    hand, cisco-secure-bpf) grants the connector's bpf rule. Raises PermissionError as
    module_state does.

    libsemanage rewrites active/ and its commit_num at every transaction, so the answer is
    kept until those change: a scrape then costs two stats, not one per module; each
    module's CIL is read again only when it changed."""
    for store in STORE_ROOTS:
        active = paths.root(store, policy_type, "active")
        modules = os.path.join(active, "modules")
        try:
            priorities = os.listdir(modules)
        except FileNotFoundError:
            continue
        # a transaction replaces active/ (a new inode) and bumps commit_num; semodule -d/-e
        # changes modules/disabled
        stamp = (_stamp(os.path.join(active, "commit_num")), _stamp(active), _stamp(modules),
                 _stamp(os.path.join(modules, "disabled")))
        cached = _stores.get(modules)
        if cached is not None and cached[0] == stamp and stamp[0] is not None:
            return cached[1]
        disabled = set(_listdir(os.path.join(modules, "disabled")))
        found = []
        for priority in sorted((p for p in priorities if p.isdigit()), key=int, reverse=True):
            names = _listdir(os.path.join(modules, priority))
            names.sort(key=lambda n: (n not in _LIKELY, _LIKELY.index(n) if n in _LIKELY
                                      else 0, n))
            found += [os.path.join(modules, priority, n, "cil") for n in names
                      if n not in disabled]
        granted = any(_module_grants(path) for path in found)
        _stores[modules] = (stamp, granted)
        return granted
    return False


def _stamp(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _module_grants(path: str) -> bool:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _granted.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    with open_host_file(path) as f:
        data = f.read(_RAW_LIMIT)
    try:
        granted = cil_grants_bpf(data)
    except ValueError:
        granted = False  # a module we cannot read grants nothing we can show
    _granted[path] = (stamp, granted)
    return granted
