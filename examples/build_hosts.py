#!/usr/bin/env python3
"""Materialise example host root trees for amp-exporter.

Each host is a directory that looks like ``/`` of a machine running (or lacking) the
Cisco Secure Endpoint Linux connector: ``etc``, ``opt/cisco/amp``, ``var/log/cisco``, a
static ``proc`` and ``sys``, ``lib/modules``. Point the exporter at one with
``--path.rootfs DEST/NAME``. ``opt/cisco/amp/bin/ampcli`` is a /bin/sh stand-in that
prints the host's ``ampcli status``. Everything is deterministic: fixed PIDs, times
and content.

    python examples/build_hosts.py DEST [NAME ...]   # build (default: all hosts)
    python examples/build_hosts.py --list            # name and description of each host

Hosts are declared at the end of the file: one OsInfo per distribution release
(os-release, init, paths, the kernel's usual modules), one base Host per way the
connector monitors it (kernel modules for file and network activity before 4.15, eBPF
CO-RE on BTF kernels with connector 1.25+, eBPF compiled against the kernel's headers,
or modules and eBPF side by side on RHEL 7), and small overrides per fault host. The
first block of hosts (healthy-*, fault-*, ...) is what the tests and golden files use;
the hosts named `<distro><version>-<what>` cover each distribution family.
The log wording and the messages of faults other than 18 are invented (the real texts
are not public); the file formats of proc, sys and etc follow the Linux kernel and the
distributions.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import os
import shutil
import sys
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional, Union

BTIME = 1764040000  # 2025-11-25 03:06:40 UTC
UPTIME = 5400.25  # seconds; "now" is BTIME + UPTIME
HZ = 100  # USER_HZ: clock ticks per second on x86_64
NCPU = 2
MTIME = BTIME + int(UPTIME)  # every file's mtime, for reproducible archives
LOCAL_IP, CLOUD_IP = "10.0.2.15", "198.51.100.24"
SCAN_USER = "cisco-amp-scan-svc"
AMP = "opt/cisco/amp"
EFI_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
PID_INIT, PID_SSHD, PID_BASH, PID_DAEMON, PID_UPDATER = 1, 1043, 2231, 1187, 1315
INO_SSH4, INO_SSH6, INO_SSH_SESSION, INO_CLOUD, INO_IPC = 22136, 22138, 40211, 31245, 31250
ANON_INODE = 1057  # every anon_inode fd (bpf-prog, bpf-map) shares this inode

# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Fault:
    id: int
    severity: str  # Critical, Major, Minor
    text: str


FAULT_TEXT = {
    5: "Scan service user is unavailable. File scans are running as root; reinstall the "
    "connector to recreate the cisco-amp-scan-svc user and group.",
    6: "Scan service is restarting frequently. File scanning continues on a best-effort "
    "basis; a file may be crashing the scan engine.",
    7: "Scan service failed to start. File scanning is disabled until the scan service "
    "starts.",
    8: "Real-time file system monitoring failed to start. Monitoring of file copies and "
    "moves is unavailable.",
    9: "Real-time network monitoring failed to start. Device flow correlation is "
    "unavailable.",
    11: "Required kernel devel package is missing. Install the headers for the running "
    "kernel and restart the connector.",
    16: "Running kernel is not compatible with this connector version. Upgrade the "
    "connector or boot a supported kernel.",
    18: "Connector event monitoring is overloaded. Investigate the most active processes "
    "for malicious activity, you can also create exclusions for the most active benign "
    "processes to reduce monitoring load.",
    19: "SELinux policy is missing or disabled. The connector cannot monitor system "
    "activity; reinstall the connector to load the cisco-secure-bpf module.",
    23: "Connector encountered an internal error (23). Contact Cisco support if it persists.",
}


def fault(fid: int, severity: str) -> Fault:
    return Fault(fid, severity, FAULT_TEXT[fid])


@dataclass(frozen=True)
class OsInfo:
    family: str  # "rhel" (RHEL, CentOS, Oracle, Amazon) or "debian" (Debian, Ubuntu)
    os_release: str
    init_exe: str
    init_args: tuple[str, ...]
    sshd_args: tuple[str, ...]
    bash_exe: str
    modules: tuple[tuple[str, int, int, str], ...]  # name, size, refcount, deps
    init_bpf: int = 0  # cgroup_device programs held by systemd (cgroup v2 hosts)
    # How systemd mounts cgroups: "v1" (legacy: name=systemd and the controllers), "hybrid"
    # (v1, and v2 at sys/fs/cgroup/unified for systemd's own tracking) or "v2" (unified only)
    cgroups: str = "v1"
    scan_uid: int = 985
    user: str = "admin"  # the login user (uid 1000) of the distribution's cloud images


# One log event: (seconds after boot, program, pid, level, message).
Event = tuple[int, str, int, str, str]


@dataclass(frozen=True)
class Host:
    description: str
    os: OsInfo
    kernel: str
    connector: Optional[str] = None  # full version, e.g. 1.26.0.1182; None: not installed
    btf: bool = False
    headers: str = "dangling"  # installed | dangling (build -> missing dir) | absent
    old_kernel: Optional[str] = None  # an older kernel whose headers are still installed
    selinux: str = ""  # "" (none), "etc" (RHEL 7 store) or "var" (RHEL 8+ store)
    selinux_mode: str = "enforcing"  # enforcing | permissive | disabled (no selinuxfs)
    bpf_module: str = "none"  # cisco-secure-bpf SELinux module: none | enabled | disabled
    base_bpf_rule: bool = False  # the base policy module itself grants the connector's rule
    secure_boot: Optional[bool] = None  # None: BIOS boot, no sys/firmware/efi
    # Connector kernel modules loaded: redirfs, ampavflt, ampfsm (file), ampnetworkflow
    kmods: tuple[str, ...] = ()
    progs: tuple[int, ...] = ()  # prog_type of each BPF program the daemon holds
    maps: tuple[tuple[int, int, int, int], ...] = ()  # map_type, key, value, max_entries
    scan_user: bool = True
    usergroups_enab: bool = True
    scan_pid: Optional[int] = 1302  # None: ampscansvc not running
    scan_start: int = 2045  # clock ticks after boot
    scan_root: bool = False  # ampscansvc runs as uid 0
    updater: bool = False
    etc_mode: int = 0o755  # mode of opt/cisco/amp/etc
    daily_truncate: Optional[int] = None  # cut daily.cvd to this many bytes
    mem: tuple[int, int, int] = (7869212, 5204820, 6822644)  # MemTotal/Free/Available kB
    daemon_cpu: tuple[int, int] = (31250, 9120)  # utime, stime in ticks
    mode: str = "Normal"
    scan: str = "Ready for scan"
    last_scan: str = "2025-11-25 03:42:17 AM"
    faults: tuple[Fault, ...] = ()
    noise: bool = False  # ampcli prints logger/connect lines first
    aligned: bool = False  # ampcli pads the keys into a column
    fault_ids_line: bool = True  # print "Fault IDs: None" on a healthy host
    orbital: str = "Disabled"
    behavioural: str = "Protect"
    policy: tuple[str, int] = ("Server Protect Policy for Linux", 4021)
    file_monitoring: bool = True  # policy: "Monitor file copies and moves"
    flow_correlation: bool = True  # policy: "Enable device flow correlation"
    log: tuple[Event, ...] = ()  # extra log lines
    kernel_log: tuple[tuple[int, str], ...] = ()  # (seconds after boot, kernel message)
    avc_denied: tuple[str, ...] = ()  # bpf permissions SELinux denied ampdaemon (audit.log)
    fault_time: int = 3000  # seconds after boot when the faults were raised
    daemon: bool = True  # False: installed, but ampdaemon is not running
    # How ampcli status behaves: "status" (answers), "no_daemon" (cannot connect: prints
    # "Trying to connect..." and exits 1), "hang" (connects, then never answers).
    ampcli_answer: str = "status"


# --------------------------------------------------------------------------- tree


Entry = Union[tuple[str, bytes, int], tuple[str, str], tuple[str, int]]


def directory_modes(entries: dict) -> dict[str, int]:
    """{directory: mode} for every directory the entries name or lie under (0755 unless an
    entry says otherwise)."""
    dirs: dict[str, int] = {}
    for path, entry in entries.items():
        parts = path.split("/")
        for i in range(1, len(parts)):
            dirs.setdefault("/".join(parts[:i]), 0o755)
        if entry[0] == "d":
            dirs[path] = entry[1]
    return dirs


class Tree:
    """Paths (relative to the host root) mapped to files, symlinks and directories."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def file(self, path: str, data: Union[str, bytes], mode: int = 0o644) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.entries[path] = ("f", raw, mode)

    def exe(self, path: str, text: str) -> None:
        self.file(path, text, 0o755)

    def link(self, path: str, target: str) -> None:
        self.entries[path] = ("l", target)

    def dir(self, path: str, mode: int = 0o755) -> None:
        self.entries[path] = ("d", mode)

    def write(self, root: Path) -> None:
        dirs = {"": 0o755, **directory_modes(self.entries)}
        for d in sorted(dirs):
            (root / d).mkdir(parents=True, exist_ok=True)
            os.chmod(root / d, 0o755)
        for path in sorted(self.entries):
            entry, target = self.entries[path], root / path
            if entry[0] == "f":
                target.write_bytes(entry[1])  # type: ignore[arg-type]
                os.chmod(target, entry[2])  # type: ignore[misc]
                os.utime(target, (MTIME, MTIME))
            elif entry[0] == "l":
                os.symlink(entry[1], target)
                os.utime(target, (MTIME, MTIME), follow_symlinks=False)
        for d in sorted(dirs, reverse=True):
            os.chmod(root / d, dirs[d])
            os.utime(root / d, (MTIME, MTIME))


# --------------------------------------------------------------------------- etc


RHEL_USERS = (
    "root:x:0:0:root:/root:/bin/bash",
    "bin:x:1:1:bin:/bin:/sbin/nologin",
    "daemon:x:2:2:daemon:/sbin:/sbin/nologin",
    "adm:x:3:4:adm:/var/adm:/sbin/nologin",
    "lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin",
    "sync:x:5:0:sync:/sbin:/bin/sync",
    "shutdown:x:6:0:shutdown:/sbin:/sbin/shutdown",
    "halt:x:7:0:halt:/sbin:/sbin/halt",
    "mail:x:8:12:mail:/var/spool/mail:/sbin/nologin",
    "operator:x:11:0:operator:/root:/sbin/nologin",
    "games:x:12:100:games:/usr/games:/sbin/nologin",
    "ftp:x:14:50:FTP User:/var/ftp:/sbin/nologin",
    "nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin",
    "dbus:x:81:81:System message bus:/:/sbin/nologin",
    "systemd-coredump:x:999:997:systemd Core Dumper:/:/sbin/nologin",
    "polkitd:x:998:996:User for polkitd:/:/sbin/nologin",
    "tss:x:59:59:Account used for TPM access:/dev/null:/sbin/nologin",
    "sshd:x:74:74:Privilege-separated SSH:/usr/share/empty.sshd:/sbin/nologin",
    "chrony:x:997:995::/var/lib/chrony:/sbin/nologin",
    "admin:x:1000:1000:admin:/home/admin:/bin/bash",
)
RHEL_GROUPS = (
    "root:x:0:", "bin:x:1:", "daemon:x:2:", "sys:x:3:", "adm:x:4:", "tty:x:5:", "disk:x:6:",
    "lp:x:7:", "mem:x:8:", "kmem:x:9:", "wheel:x:10:admin", "cdrom:x:11:", "mail:x:12:",
    "man:x:15:", "dialout:x:18:", "floppy:x:19:", "games:x:20:", "tape:x:33:", "video:x:39:",
    "ftp:x:50:", "lock:x:54:", "audio:x:63:", "users:x:100:", "nobody:x:65534:",
    "dbus:x:81:", "utmp:x:22:", "utempter:x:35:", "input:x:999:", "kvm:x:36:",
    "render:x:998:", "systemd-journal:x:190:", "systemd-coredump:x:997:", "polkitd:x:996:",
    "tss:x:59:", "ssh_keys:x:101:", "sshd:x:74:", "chrony:x:995:", "admin:x:1000:",
)
DEBIAN_USERS = (
    "root:x:0:0:root:/root:/bin/bash",
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
    "bin:x:2:2:bin:/bin:/usr/sbin/nologin",
    "sys:x:3:3:sys:/dev:/usr/sbin/nologin",
    "sync:x:4:65534:sync:/bin:/bin/sync",
    "games:x:5:60:games:/usr/games:/usr/sbin/nologin",
    "man:x:6:12:man:/var/cache/man:/usr/sbin/nologin",
    "lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin",
    "mail:x:8:8:mail:/var/mail:/usr/sbin/nologin",
    "news:x:9:9:news:/var/spool/news:/usr/sbin/nologin",
    "proxy:x:13:13:proxy:/bin:/usr/sbin/nologin",
    "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin",
    "backup:x:34:34:backup:/var/backups:/usr/sbin/nologin",
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
    "_apt:x:100:65534::/nonexistent:/usr/sbin/nologin",
    "systemd-timesync:x:101:102:systemd Time Synchronization,,,:/run/systemd:/usr/sbin/nologin",
    "systemd-network:x:102:103:systemd Network Management,,,:/run/systemd:/usr/sbin/nologin",
    "systemd-resolve:x:103:104:systemd Resolver,,,:/run/systemd:/usr/sbin/nologin",
    "messagebus:x:104:110::/nonexistent:/usr/sbin/nologin",
    "sshd:x:105:65534::/run/sshd:/usr/sbin/nologin",
    "admin:x:1000:1000:admin,,,:/home/admin:/bin/bash",
)
DEBIAN_GROUPS = (
    "root:x:0:", "daemon:x:1:", "bin:x:2:", "sys:x:3:", "adm:x:4:admin", "tty:x:5:",
    "disk:x:6:", "lp:x:7:", "mail:x:8:", "news:x:9:", "man:x:12:", "proxy:x:13:",
    "kmem:x:15:", "dialout:x:20:", "cdrom:x:24:admin", "floppy:x:25:", "sudo:x:27:admin",
    "audio:x:29:", "www-data:x:33:", "backup:x:34:", "operator:x:37:", "staff:x:50:",
    "games:x:60:", "users:x:100:", "nogroup:x:65534:", "systemd-journal:x:101:",
    "systemd-timesync:x:102:", "systemd-network:x:103:", "systemd-resolve:x:104:",
    "input:x:105:", "kvm:x:106:", "render:x:107:", "ssh:x:108:", "messagebus:x:110:",
    "admin:x:1000:",
)


def login_user(lines: tuple[str, ...], user: str) -> list[str]:
    """passwd or group lines with the login user "admin" renamed (ec2-user, opc, ubuntu)."""
    out = []
    for line in lines:
        fields = line.split(":")
        if fields[0] == "admin":
            fields[0] = user
        if len(fields) == 7 and fields[0] == user:  # passwd: gecos and home too
            fields[4], fields[5] = fields[4].replace("admin", user), f"/home/{user}"
        elif len(fields) == 4:  # group: its members
            fields[3] = ",".join(user if m == "admin" else m for m in fields[3].split(",")
                                 if m)
        out.append(":".join(fields))
    return out


def etc_files(t: Tree, name: str, h: Host) -> None:
    deb = h.os.family == "debian"
    nologin = "/usr/sbin/nologin" if deb else "/sbin/nologin"
    users = login_user(DEBIAN_USERS if deb else RHEL_USERS, h.os.user)
    groups = login_user(DEBIAN_GROUPS if deb else RHEL_GROUPS, h.os.user)
    if h.scan_user and h.connector:
        uid = h.os.scan_uid
        users.append(f"{SCAN_USER}:x:{uid}:{uid}::/{AMP}:{nologin}")
        groups.append(f"{SCAN_USER}:x:{uid}:")
    t.file("etc/passwd", "\n".join(users) + "\n")
    t.file("etc/group", "\n".join(groups) + "\n")
    t.file("etc/hostname", name + "\n")
    t.file("etc/os-release", h.os.os_release)
    sys_min = 100 if deb else 201
    t.file("etc/login.defs", (
        "#\n# /etc/login.defs - Configuration control definitions for the login package.\n"
        "#\n# Lines starting with '#' are comments; only an excerpt is kept here.\n#\n"
        f"MAIL_DIR\t{'/var/mail' if deb else '/var/spool/mail'}\n"
        "UMASK\t\t022\n"
        "PASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\n\n"
        "UID_MIN\t\t\t 1000\nUID_MAX\t\t\t60000\n"
        f"SYS_UID_MIN\t\t  {sys_min}\nSYS_UID_MAX\t\t  999\n"
        "GID_MIN\t\t\t 1000\nGID_MAX\t\t\t60000\n"
        f"SYS_GID_MIN\t\t  {sys_min}\nSYS_GID_MAX\t\t  999\n\n"
        + ("" if deb else "CREATE_HOME\tyes\n")
        + "# Delete the user's group when it has no more members, and create a\n"
        "# group with the user's name for new users.\n"
        f"USERGROUPS_ENAB {'yes' if h.usergroups_enab else 'no'}\n\n"
        "ENCRYPT_METHOD SHA512\n"
    ))
    if h.selinux:
        t.file("etc/selinux/config", (
            "# This file controls the state of SELinux on the system.\n"
            "# SELINUX= can take one of these three values:\n"
            "#     enforcing - SELinux security policy is enforced.\n"
            "#     permissive - SELinux prints warnings instead of enforcing.\n"
            "#     disabled - No SELinux policy is loaded.\n"
            f"SELINUX={h.selinux_mode}\n"
            "# SELINUXTYPE= can take one of these three values:\n"
            "#     targeted - Targeted processes are protected,\n"
            "#     minimum - Modification of targeted policy. "
            "Only selected processes are protected.\n"
            "#     mls - Multi Level Security protection.\n"
            "SELINUXTYPE=targeted\n"
        ))
        selinux_store(t, h)


BPF_PERMS = "map_create map_read map_write prog_load prog_run"
BPF_RULE_CIL = f"(allow unconfined_service_t self (bpf ({BPF_PERMS})))\n"
# An excerpt of the targeted policy's base module as CIL. It declares the bpf class and
# its permissions whatever it allows: only an allow rule grants them.
BASE_CIL = (
    "(handleunknown allow)\n"
    "(mls true)\n"
    "(policycap network_peer_controls)\n"
    "(policycap open_perms)\n"
    "(policycap extended_socket_class)\n"
    "(policycap always_check_network)\n"
    f"(class bpf ({BPF_PERMS}))\n"
    "(type init_t)\n"
    "(type unconfined_service_t)\n"
    "(type unconfined_service_exec_t)\n"
    "(roletype system_r unconfined_service_t)\n"
    "(typeattributeset domain (init_t unconfined_service_t))\n"
    "(allow unconfined_service_t unconfined_service_exec_t (file (ioctl read getattr lock "
    "map execute open entrypoint)))\n"
    "(allow init_t unconfined_service_t (process (transition)))\n"
    "(typetransition init_t unconfined_service_exec_t process unconfined_service_t)\n"
)


def selinux_store(t: Tree, h: Host) -> None:
    """libsemanage's module store: each module's `cil` and `hll` (the policy package it
    was built from) bzip2-compressed, `lang_ext` naming the source language."""
    root = ("etc/selinux" if h.selinux == "etc" else "var/lib/selinux") + "/targeted/active"
    pp_magic = bytes.fromhex("8fff7cf9")  # policy package magic 0xf97cff8f, little-endian
    base = BASE_CIL + (BPF_RULE_CIL if h.base_bpf_rule else "")
    mods = {"100/base": base, "100/ssh": "(typeattribute ssh_t)\n",
            "100/unconfineduser": "(typeattribute unconfined_t)\n"}
    if h.bpf_module != "none":
        mods["400/cisco-secure-bpf"] = BPF_RULE_CIL
    for mod, cil in mods.items():
        hll = pp_magic + hashlib.sha256(cil.encode()).digest()
        t.file(f"{root}/modules/{mod}/cil", bz2.compress(cil.encode(), 9))
        t.file(f"{root}/modules/{mod}/hll", bz2.compress(hll, 9))
        t.file(f"{root}/modules/{mod}/lang_ext", "pp")
    t.dir(f"{root}/modules/disabled")
    if h.bpf_module == "disabled":
        t.file(f"{root}/modules/disabled/cisco-secure-bpf", "")
    t.file(f"{root}/commit_num", (7).to_bytes(4, "little"))


# --------------------------------------------------------------------------- connector


def stand_in(prog: str) -> str:
    return (f"#!/bin/sh\n# Stand-in written by examples/build_hosts.py.\n"
            f'echo "{prog}: stand-in for the Cisco Secure Endpoint binary; not runnable" >&2\n'
            "exit 1\n")


def status_text(h: Host) -> str:
    order = {"Critical": 0, "Major": 1, "Minor": 2}
    counts: dict[str, int] = {}
    for f in sorted(h.faults, key=lambda f: order.get(f.severity, 9)):
        counts[f.severity] = counts.get(f.severity, 0) + 1
    rows = [("Status", "Connected"), ("Mode", h.mode), ("Scan", h.scan),
            ("Last Scan", h.last_scan), ("Policy", f"{h.policy[0]} (#{h.policy[1]})"),
            ("Command-line", "Enabled"), ("Orbital", h.orbital),
            ("Behavioural Protection", h.behavioural),
            ("Faults", ", ".join(f"{n} {s}" for s, n in counts.items()) or "None")]
    if h.faults or h.fault_ids_line:
        rows.append(("Fault IDs", ", ".join(str(f.id) for f in h.faults) or "None"))
    width = 15 if h.aligned else 0  # "Status:        Connected"
    lines = [f"{key}:{' ' * max(1, width - len(key) - 1)}{value}" for key, value in rows]
    lines += [f"ID {f.id} - {f.severity}: {f.text}" for f in h.faults]
    return "\n".join(lines) + "\n"


def ampcli(h: Host) -> str:
    assert h.connector
    logger = "echo '[logger] Set minimum reported log level to notice'\n"
    noise = (logger + "echo 'Trying to connect...'\necho 'Connected.'\n") if h.noise else ""
    short = ".".join(h.connector.split(".")[:3])
    if h.ampcli_answer == "no_daemon":  # what the issue saw on a host whose daemon died
        noise = logger + "echo 'Trying to connect...'\nexit 1\n"
    elif h.ampcli_answer == "hang":  # a stuck daemon: the exporter's deadline must end it
        noise = logger + "echo 'Trying to connect...'\necho 'Connected.'\nexec sleep 3600\n"
    return (
        "#!/bin/sh\n# Stand-in for ampcli, written by examples/build_hosts.py.\n"
        "# Reads the command from its arguments or, like the real ampcli, from stdin.\n"
        'cmd="$1"\nif [ -z "$cmd" ]; then read -r cmd || true; fi\n'
        + noise
        + 'case "$cmd" in\nstatus)\n    cat <<\'EOF\'\n' + status_text(h) + "EOF\n    ;;\n"
        f"about)\n    echo 'Cisco Secure Endpoint Connector {short}'\n    ;;\n"
        '*)\n    echo "Unknown command: $cmd. Type \'help\' for a list of commands." >&2\n'
        "    exit 1\n    ;;\nesac\nexit 0\n"
    )


def cvd(kind: str, header: str, size: int) -> bytes:
    body, block = b"", hashlib.sha256(kind.encode()).digest()
    while len(body) < size:
        block = hashlib.sha256(block).digest()
        body += block
    md5 = hashlib.md5(body).hexdigest()
    sig = hashlib.sha512(body).hexdigest()[:86]
    fields = header.split(":")
    fields[5:7] = [md5, sig]
    return ":".join(fields).encode().ljust(512, b" ") + body


def connector_files(t: Tree, name: str, h: Host) -> None:
    assert h.connector
    for prog in ("ampdaemon", "ampscansvc", "ampupdater"):
        t.exe(f"{AMP}/bin/{prog}", stand_in(prog))
    t.exe(f"{AMP}/bin/ampcli", ampcli(h))
    t.dir(f"{AMP}/etc", h.etc_mode)
    t.file(f"{AMP}/etc/global.xml", (
        '<?xml version="1.0" encoding="UTF-8"?>\n<config>\n  <agent>\n'
        f"    <version>{h.connector}</version>\n  </agent>\n</config>\n"))
    agent = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.example.com")
    t.file(f"{AMP}/etc/local.xml", (
        '<?xml version="1.0" encoding="UTF-8"?>\n<config>\n  <agent>\n'
        f"    <uuid>{agent}</uuid>\n  </agent>\n</config>\n"))
    pol_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"policy-{h.policy[1]}.example.com")
    digest = hashlib.sha256(h.policy[0].encode()).hexdigest()
    t.file(f"{AMP}/etc/policy.xml", (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">\n'
        '  <SignedInfo><Reference URI="#policy"><DigestValue>'
        f"{digest}</DigestValue></Reference></SignedInfo>\n"
        f"  <SignatureValue>{digest[::-1]}</SignatureValue>\n"
        '  <Object Id="policy">\n    <config>\n'
        f"      <janus><policy><name>{h.policy[0]}</name><uuid>{pol_uuid}</uuid>"
        f"<serial_number>{h.policy[1]}</serial_number><updated>1763900000000</updated>"
        "</policy></janus>\n"
        "      <agent>\n"
        f"        <driver><protmode><file>{int(h.file_monitoring)}</file><process>1</process>"
        "<qaction>1</qaction><activeexec>0</activeexec></protmode></driver>\n"
        f"        <nfm><enable>{int(h.flow_correlation)}</enable></nfm>\n"
        "        <apde><enable>1</enable><mode>1</mode></apde>\n"
        "        <scansettings><clamav><enable>1</enable></clamav></scansettings>\n"
        "      </agent>\n"
        f"      <orbital><enable>{int(h.orbital == 'Enabled')}</enable></orbital>\n"
        "    </config>\n  </Object>\n</Signature>\n"))
    t.file(f"{AMP}/clamav/main.cvd", cvd(
        "main", "ClamAV-VDB:16 Sep 2021 08-32 -0400:62:6647427:90:md5:sig:sigmgr:1631795551",
        4096))
    daily = cvd("daily", "ClamAV-VDB:24 Nov 2025 04-20 -0500:27833:2076921:90:md5:sig:"
                "raynman:1763976000", 6144)
    t.file(f"{AMP}/clamav/daily.cvd", daily[: h.daily_truncate])


# --------------------------------------------------------------------------- logs

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def version(text: str) -> tuple[int, ...]:
    """(4, 15) of "4.15.0-213-generic", (1, 25, 1, 1043) of "1.25.1.1043"."""
    return tuple(int(x) for x in text.split("-")[0].split(".") if x.isdigit())


def modules_era(h: Host) -> bool:
    """The kernel still has jprobes (before 4.15): the connector's modules can load."""
    return version(h.kernel)[:2] < (4, 15)


def uses_ebpf(h: Host) -> bool:
    """The connector runs or tries eBPF: a 4.15+ kernel, programs held, fault 11 or 19."""
    return (not modules_era(h) or bool(h.progs)
            or any(f.id in (11, 19) for f in h.faults))


def core(h: Host) -> bool:
    """eBPF CO-RE: a BTF kernel and connector 1.25+; otherwise eBPF needs the headers."""
    return h.btf and h.connector is not None and version(h.connector) >= (1, 25)


def base_log(h: Host) -> list[Event]:
    d, s = PID_DAEMON, 1302  # the scan service's first pid; restarts are in h.log
    ev: list[Event] = [
        (18, "ampdaemon", d, "Info", f"Cisco Secure Endpoint Connector {h.connector} starting"),
        (18, "ampdaemon", d, "Info", f"Running kernel {h.kernel}"),
        (19, "ampdaemon", d, "Info", f'Loaded policy "{h.policy[0]}" (serial {h.policy[1]})'),
    ]
    if modules_era(h) and uses_ebpf(h):  # RHEL 7: modules and eBPF side by side
        features = [f for f, on in (("file", h.file_monitoring), ("network",
                                    h.flow_correlation)) if on]
        ev.append((19, "ampdaemon", d, "Info", f"Using kernel modules for {' and '.join(features)}"
                   " monitoring, eBPF for process monitoring"))
    elif modules_era(h):
        ev.append((19, "ampdaemon", d, "Info", "Using kernel modules for monitoring"))
    if core(h):
        ev.append((19, "ampdaemon", d, "Info", "Kernel BTF found, using eBPF CO-RE programs"))
    elif uses_ebpf(h):
        ev.append((19, "ampdaemon", d, "Info",
                   f"No kernel BTF; building eBPF programs with /lib/modules/{h.kernel}/build"))
    if h.progs:
        ev.append((20, "ampdaemon", d, "Info",
                   f"eBPF monitoring started: {len(h.progs)} programs, {len(h.maps)} maps"))
    for mod in h.kmods:
        ev.append((20, "ampdaemon", d, "Info", f"Kernel module {mod} is loaded"))
    if h.scan_pid:
        ev += [(20, "ampdaemon", d, "Info", "Starting scan service"),
               (20, "ampscansvc", s, "Info", "Scan service starting"),
               (23, "ampscansvc", s, "Info", "Loaded 8724348 signatures (main 62, daily 27833)"),
               (23, "ampscansvc", s, "Info", "Scan service ready")]
    ev += [(21, "ampdaemon", d, "Info", "Connecting to cloud-ec.amp.cisco.com:443"),
           (22, "ampdaemon", d, "Info", "Connected to cloud"),
           (25, "ampdaemon", d, "Info", "Definitions up to date: main 62, daily 27833")]
    for i in range(1, 9):
        t = i * 600
        ev.append((t, "ampdaemon", d, "Info", "Heartbeat sent; policy is up to date"))
        if h.scan_pid and i % 2 == 0:
            ev.append((t + 5, "ampscansvc", s, "Info",
                       f"On-access scans: {i * 1412} files, 0 detections"))
    ev += [  # the scheduled flash scan behind "Last Scan"
(2100, "ampdaemon", d, "Info", "Flash scan started"),
           (2137, "ampdaemon", d, "Info", "Flash scan completed: 0 detections")]
    for f in h.faults:
        ev.append((h.fault_time, "ampdaemon", d, "Warning", f"Fault {f.id} ({f.severity}) raised"))
    return ev + list(h.log)


def log_files(t: Tree, name: str, h: Host) -> None:
    out: dict[str, list[str]] = {"ampdaemon": [], "ampscansvc": []}
    for sec, prog, pid, level, msg in sorted(base_log(h), key=lambda e: e[0]):
        out[prog].append(f"{syslog_stamp(sec)} {name} {prog}[{pid}]: {level}: {msg}")
    for prog, lines in out.items():
        t.file(f"var/log/cisco/{prog}.log", "\n".join(lines) + "\n")
    t.dir("var/log/cisco")
    if h.kernel_log:  # rsyslog's kernel lines: /var/log/messages, kern.log on Debian
        log = "kern.log" if h.os.family == "debian" else "messages"
        t.file(f"var/log/{log}", "".join(
            f"{syslog_stamp(sec)} {name} kernel: {msg}\n" for sec, msg in h.kernel_log))
    if h.avc_denied:  # auditd's record of each denial, as ausearch -m avc shows it
        ctx = "system_u:system_r:unconfined_service_t:s0"
        permissive = "" if h.selinux == "etc" else " permissive=0"  # RHEL 7 omits it
        t.file("var/log/audit/audit.log", "".join(
            f"type=AVC msg=audit({BTIME + h.fault_time - 1}.{412 + i:03d}:{2210 + i}): avc:  "
            f"denied  {{ {perm} }} for  pid={PID_DAEMON} comm=\"ampdaemon\" scontext={ctx} "
            f"tcontext={ctx} tclass=bpf{permissive}\n" for i, perm in enumerate(h.avc_denied)),
            0o600)


def syslog_stamp(sec: int) -> str:
    ts = datetime.fromtimestamp(BTIME, timezone.utc) + timedelta(seconds=sec)
    return f"{MONTHS[ts.month - 1]} {ts.day:2d} {ts:%H:%M:%S}"


# --------------------------------------------------------------------------- proc


@dataclass(frozen=True)
class Fd:
    num: int
    target: str
    flags: str = "0100002"
    mnt_id: int = 23
    ino: int = 5
    pos: int = 0
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    exe: str
    args: tuple[str, ...]
    start: int  # clock ticks after boot
    vm_kb: int
    rss_kb: int
    cpu: tuple[int, int] = (50, 30)
    uid: int = 0
    threads: int = 1
    fds: tuple[Fd, ...] = ()
    tty: int = 0


def std_fds(target: str = "/dev/null") -> list[Fd]:
    return [Fd(i, target) for i in range(3)]


def sock(num: int, inode: int) -> Fd:
    return Fd(num, f"socket:[{inode}]", "02000002", 10, inode)


def log_fd(num: int, t: Tree, prog: str, ino: int) -> Fd:
    size = len(t.entries[f"var/log/cisco/{prog}.log"][1])  # type: ignore[arg-type]
    return Fd(num, f"/var/log/cisco/{prog}.log", "02102001", 29, ino, size)


def bpf_fds(first: int, progs: tuple[int, ...], maps: tuple[tuple[int, int, int, int], ...],
            prog_id: int, map_id: int, seed: str) -> list[Fd]:
    fds, num = [], first
    for i, (mtype, key, val, cap) in enumerate(maps):  # libbpf creates maps first
        memlock = 4206592 if mtype == 27 else ((key + val) * cap + 4095) // 4096 * 4096 + 4096
        fds.append(Fd(num, "anon_inode:bpf-map", "02000002", 15, ANON_INODE, 0, (
            f"map_type:\t{mtype}", f"key_size:\t{key}", f"value_size:\t{val}",
            f"max_entries:\t{cap}", "map_flags:\t0x0", f"memlock:\t{memlock}",
            f"map_id:\t{map_id + i}", "frozen:\t0")))
        num += 1
    for i, ptype in enumerate(progs):
        tag = hashlib.sha256(f"{seed}/{i}".encode()).hexdigest()[:16]
        fds.append(Fd(num, "anon_inode:bpf-prog", "02000002", 15, ANON_INODE, 0, (
            f"prog_type:\t{ptype}", "prog_jited:\t1", f"prog_tag:\t{tag}",
            f"memlock:\t{4096 * (1 + i % 3)}", f"prog_id:\t{prog_id + i}")))
        num += 1
    return fds


def processes(t: Tree, h: Host) -> list[Proc]:
    o = h.os
    init_fds = std_fds() + bpf_fds(3, (15,) * o.init_bpf, (), 2, 0, "systemd")
    procs = [
        Proc(PID_INIT, 0, "systemd", o.init_exe, o.init_args, 8, 174416, 14212, (212, 388),
             fds=tuple(init_fds)),
        Proc(PID_SSHD, 1, "sshd", "/usr/sbin/sshd", o.sshd_args, 912, 15872, 9180, (3, 2),
             fds=(*std_fds(), sock(3, INO_SSH4), sock(4, INO_SSH6))),
        Proc(PID_BASH, PID_SSHD, "bash", o.bash_exe, ("-bash",), 341200, 224576, 5312, (4, 3),
             uid=1000, tty=34816,
             fds=(*std_fds("/dev/pts/0"), Fd(255, "/dev/pts/0", "0102002", 25, 3))),
    ]
    if not h.connector or not h.daemon:
        return procs
    bin_ = f"/{AMP}/bin"
    daemon_fds = [*std_fds(), log_fd(3, t, "ampdaemon", 134519), sock(4, INO_CLOUD),
                  sock(5, INO_IPC)]
    daemon_fds += bpf_fds(6, h.progs, h.maps, 41, 12, h.kernel)
    procs.append(Proc(PID_DAEMON, 1, "ampdaemon", f"{bin_}/ampdaemon", (f"{bin_}/ampdaemon",),
                      1804, 1247408, 142860, h.daemon_cpu, threads=24, fds=tuple(daemon_fds)))
    if h.scan_pid:
        uid = 0 if h.scan_root else o.scan_uid
        procs.append(Proc(h.scan_pid, PID_DAEMON, "ampscansvc", f"{bin_}/ampscansvc",
                          (f"{bin_}/ampscansvc",), h.scan_start, 1398212, 1049532,
                          (4210, 655), uid=uid, threads=6,
                          fds=(*std_fds(), log_fd(3, t, "ampscansvc", 134520),
                               sock(4, INO_IPC + 1))))
    if h.updater:
        procs.append(Proc(PID_UPDATER, 1, "ampupdater", f"{bin_}/ampupdater",
                          (f"{bin_}/ampupdater", "--daemon"), 2110, 309240, 18220, (61, 40),
                          threads=3, fds=tuple(std_fds())))
    return procs


def proc_pid(t: Tree, p: Proc) -> None:
    d = f"proc/{p.pid}"
    base = 0x55D4_0000_0000 + p.pid * 0x1000_0000
    rss_pages, vsize = p.rss_kb // 4, p.vm_kb * 1024
    tpgid = p.pid if p.tty else -1
    fields = [
        p.pid, f"({p.comm})", "S", p.ppid, p.pid, p.pid, p.tty, tpgid, 4194560,
        p.rss_kb // 2, 0, p.rss_kb // 300, 0, p.cpu[0], p.cpu[1], 0, 0, 20, 0, p.threads, 0,
        p.start, vsize, rss_pages, 18446744073709551615, base, base + 0x2F0000,
        0x7FFD_1230_0000 + p.pid * 0x100, 0, 0, 0, 0, 4096, 16387 if p.pid == 1 else 84483, 1,
        0, 0, 17, p.pid % NCPU, 0, 0, 0, 0, 0, base + 0x4F0000, base + 0x508000,
        base + 0x1A00000, 0x7FFD_1230_8000, 0x7FFD_1230_8040, 0x7FFD_1230_8040,
        0x7FFD_1230_8FE0, 0,
    ]
    assert len(fields) == 52
    t.file(f"{d}/stat", " ".join(map(str, fields)) + "\n")
    data_kb = p.vm_kb // 3
    t.file(f"{d}/statm", f"{p.vm_kb // 4} {rss_pages} {rss_pages // 6} 752 0 "
                         f"{data_kb // 4} 0\n")
    gid = p.uid
    t.file(f"{d}/status", "".join(f"{k}:\t{v}\n" for k, v in (
        ("Name", p.comm), ("Umask", "0022"), ("State", "S (sleeping)"), ("Tgid", p.pid),
        ("Ngid", 0), ("Pid", p.pid), ("PPid", p.ppid), ("TracerPid", 0),
        ("Uid", f"{p.uid}\t{p.uid}\t{p.uid}\t{p.uid}"),
        ("Gid", f"{gid}\t{gid}\t{gid}\t{gid}"), ("FDSize", 64), ("Groups", ""),
        ("NStgid", p.pid), ("NSpid", p.pid), ("NSpgid", p.pid), ("NSsid", p.pid),
        ("VmPeak", f"{p.vm_kb + 65536:8d} kB"), ("VmSize", f"{p.vm_kb:8d} kB"),
        ("VmLck", f"{0:8d} kB"), ("VmHWM", f"{p.rss_kb + 4096:8d} kB"),
        ("VmRSS", f"{p.rss_kb:8d} kB"), ("RssAnon", f"{p.rss_kb * 4 // 5:8d} kB"),
        ("RssFile", f"{p.rss_kb - p.rss_kb * 4 // 5:8d} kB"), ("RssShmem", f"{0:8d} kB"),
        ("VmData", f"{data_kb:8d} kB"), ("VmStk", f"{132:8d} kB"),
        ("VmExe", f"{3008:8d} kB"), ("VmSwap", f"{0:8d} kB"), ("Threads", p.threads),
        ("SigQ", "0/30446"), ("SigBlk", "0000000000000000"), ("SigIgn", "0000000000001000"),
        ("SigCgt", "0000000180014a03"), ("CapEff", "0000000000000000" if p.uid else
                                          "000001ffffffffff"),
        ("NoNewPrivs", 0), ("Seccomp", 0), ("Cpus_allowed_list", f"0-{NCPU - 1}"),
        ("voluntary_ctxt_switches", p.cpu[0] * 7 + 11),
        ("nonvoluntary_ctxt_switches", p.cpu[1] // 3 + 2),
    )))
    t.file(f"{d}/comm", p.comm + "\n")
    t.file(f"{d}/cmdline", "".join(a + "\0" for a in p.args))
    t.link(f"{d}/exe", p.exe)
    t.link(f"{d}/cwd", "/")
    t.dir(f"{d}/fd")
    t.dir(f"{d}/fdinfo")
    for fd in p.fds:
        t.link(f"{d}/fd/{fd.num}", fd.target)
        t.file(f"{d}/fdinfo/{fd.num}", "".join(f"{line}\n" for line in (
            f"pos:\t{fd.pos}", f"flags:\t{fd.flags}", f"mnt_id:\t{fd.mnt_id}",
            f"ino:\t{fd.ino}", *fd.extra)))


CONNECTOR_UNIT = "/system.slice/cisco-amp.service"


def unit_of(p: Proc, h: Host) -> str:
    """The cgroup systemd keeps the process in: its unit's, or the login session's."""
    if p.pid == PID_INIT:
        return "/" if h.kernel.startswith("3.") else "/init.scope"  # systemd 219: the root
    if p.comm == "sshd":
        return "/system.slice/sshd.service"
    if p.comm == "bash":
        return "/user.slice/user-1000.slice/session-1.scope"
    return CONNECTOR_UNIT  # the daemon and what it starts


def cgroup_text(h: Host, unit: str) -> str:
    """proc/PID/cgroup: one line per hierarchy, `ID:CONTROLLERS:PATH`. systemd puts every
    unit in its own cgroup of the name=systemd (v1) or unified (v2) hierarchy, and of the
    devices and pids controllers; the others stay at the root without accounting."""
    if h.os.cgroups == "v2":
        return f"0::{unit}\n"
    lines = [f"11:devices:{unit}", f"10:pids:{unit}", "9:cpuset:/", "8:freezer:/",
             "7:memory:/", "6:perf_event:/", "5:hugetlb:/", "4:blkio:/",
             "3:net_cls,net_prio:/", "2:cpu,cpuacct:/", f"1:name=systemd:{unit}"]
    if h.os.cgroups == "hybrid":
        lines.append(f"0::{unit}")
    elif not h.kernel.startswith("3."):
        lines.append("0::/")  # cgroup2 is in the kernel, unused
    return "".join(line + "\n" for line in lines)


def cgroup_files(t: Tree, h: Host, procs: list[Proc]) -> None:
    """cgroup.procs of the connector's unit, in each hierarchy the exporter may look at it
    (sys/fs/cgroup is the unified hierarchy itself on a v2 host). The unit's cgroup exists
    while it runs."""
    members = sorted(p.pid for p in procs if unit_of(p, h) == CONNECTOR_UNIT)
    if not members:
        return
    dirs = {"v2": ("",), "hybrid": ("unified", "systemd", "pids"), "v1": ("systemd", "pids")}
    for d in dirs[h.os.cgroups]:
        base = f"sys/fs/cgroup/{d}" if d else "sys/fs/cgroup"
        t.file(f"{base}{CONNECTOR_UNIT}/cgroup.procs", "".join(f"{pid}\n" for pid in members))


def hex4(ip: str) -> str:
    return "".join(f"{int(b):02X}" for b in reversed(ip.split(".")))


def tcp_line(i: int, local: str, remote: str, state: int, uid: int, inode: int,
             v6: bool = False) -> str:
    timer = "02:000008C1" if state == 1 else "00:00000000"
    tail = "20 4 30 10 -1" if state == 1 else "100 0 0 10 0"
    sk = f"ffff8f3c{0x4a0b8000 + i * 0x7c0 + (0x1000 if v6 else 0):08x}"
    line = (f"{i:4d}: {local} {remote} {state:02X} 00000000:00000000 {timer} 00000000 "
            f"{uid:5d} {0:8d} {inode} {2 if state == 1 else 1} {sk} {tail}")
    return line if v6 else line.ljust(149)  # tcp4 rows are padded to 149 characters


AMP_MODULES = ("ampnetworkflow", "ampfsm", "ampavflt", "redirfs")
UNKNOWN_KMODS = "Host.kmods names a module the builder does not know"


def modules_text(h: Host) -> str:
    """proc/modules: the connector's modules (out of tree, unsigned: tainted OE) above the
    distribution's, newest first as the kernel lists them."""
    assert set(h.kmods) <= set(AMP_MODULES), UNKNOWN_KMODS
    assert not h.kmods or modules_era(h), "the modules need jprobes: kernels before 4.15"
    mods = list(h.os.modules)
    if "ampavflt" in h.kmods:
        mods.insert(0, ("ampavflt", 36864, 0, "-"))
    if "ampfsm" in h.kmods:
        mods.insert(0, ("ampfsm", 61440, 2, "-"))
    if "redirfs" in h.kmods:
        users = "ampavflt," if "ampavflt" in h.kmods else "-"
        mods.insert(0, ("redirfs", 63616, int("ampavflt" in h.kmods), users))
    if "ampnetworkflow" in h.kmods:
        mods.insert(0, ("ampnetworkflow", 45412, 1, "-"))
    paged = version(h.kernel)[0] >= 4  # 4.x kernels report page-rounded module sizes
    addr = 0xFFFFFFFFC0A1B000
    lines = []
    for name, size, refs, deps in mods:
        if paged:
            size = (size + 0xFFF) // 0x1000 * 0x1000
        taint = " (OE)" if name in AMP_MODULES else ""
        lines.append(f"{name} {size} {refs} {deps} Live 0x{addr:016x}{taint}")
        addr -= (size + 0xFFF) // 0x1000 * 0x1000 + 0x2000
    return "\n".join(lines) + "\n"


def proc_files(t: Tree, h: Host) -> None:
    t.file("proc/sys/kernel/osrelease", h.kernel + "\n")
    t.file("proc/version", f"Linux version {h.kernel} (mockbuild@example) #1 SMP\n")
    ticks, procs = int(UPTIME * HZ), processes(t, h)
    user = sum(p.cpu[0] for p in procs) // NCPU  # the processes' CPU time, plus the rest
    system = sum(p.cpu[1] for p in procs) // NCPU
    busy = [(user + 9812, 41, system + 5121, 1203, 310, 402),
            (user + 8897, 12, system + 4780, 1090, 285, 377)]
    rows = [[u, n, s, ticks - u - n - s - w - i - q, w, i, q, 0, 0, 0]
            for u, n, s, w, i, q in busy]
    total = [sum(c) for c in zip(*rows)]
    cpus = "".join(f"cpu{k} " + " ".join(map(str, r)) + "\n" for k, r in enumerate(rows))
    t.file("proc/stat", (
        "cpu  " + " ".join(map(str, total)) + "\n" + cpus
        + "intr 9183512 22 9 0 0 0 0 0 0 0 0 0 0 156 0 0 0 0 0 0 0 0 0 0 0\n"
        "ctxt 21984522\n"
        f"btime {BTIME}\n"
        "processes 48310\nprocs_running 2\nprocs_blocked 0\n"
        "softirq 4521330 1 1593022 41 201343 81244 0 22012 1301540 0 1322127\n"))
    t.file("proc/uptime", f"{UPTIME:.2f} {total[3] / HZ:.2f}\n")
    mem_total, mem_free, avail = h.mem
    buffers = mem_total // 90
    cached = max(avail - mem_free - buffers + 61440, 40960)
    used_anon = max(mem_total - mem_free - buffers - cached - 260000, 10000)
    rows_kb = (
        ("MemTotal", mem_total), ("MemFree", mem_free), ("MemAvailable", avail),
        ("Buffers", buffers), ("Cached", cached), ("SwapCached", 0),
        ("Active", used_anon // 2 + cached // 2), ("Inactive", used_anon // 2 + cached // 2),
        ("Active(anon)", used_anon // 2), ("Inactive(anon)", used_anon // 2),
        ("Active(file)", cached // 2), ("Inactive(file)", cached // 2),
        ("Unevictable", 0), ("Mlocked", 0), ("SwapTotal", 2097148), ("SwapFree", 2097148),
        ("Dirty", 132), ("Writeback", 0), ("AnonPages", used_anon), ("Mapped", 101244),
        ("Shmem", 17932), ("KReclaimable", 91532), ("Slab", 192808),
        ("SReclaimable", 91532), ("SUnreclaim", 101276), ("KernelStack", 6912),
        ("PageTables", 9512), ("NFS_Unstable", 0), ("Bounce", 0), ("WritebackTmp", 0),
        ("CommitLimit", mem_total // 2 + 2097148), ("Committed_AS", used_anon * 2),
        ("VmallocTotal", 34359738367), ("VmallocUsed", 38844), ("VmallocChunk", 0),
        ("Percpu", 2560), ("HardwareCorrupted", 0), ("AnonHugePages", 0),
        ("HugePages_Total", None), ("HugePages_Free", None), ("HugePages_Rsvd", None),
        ("HugePages_Surp", None), ("Hugepagesize", 2048), ("Hugetlb", 0),
        ("DirectMap4k", 210816), ("DirectMap2M", mem_total - 210816 + 2 * 1024 * 1024),
    )
    t.file("proc/meminfo", "".join(
        f"{k + ':':<16}{0:8d}\n" if v is None else f"{k + ':':<16}{v:8d} kB\n"
        for k, v in rows_kb))
    t.file("proc/modules", modules_text(h))
    ip, v6_any = hex4(LOCAL_IP), "0" * 32
    tcp = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
           "   uid  timeout inode".ljust(149),
           tcp_line(0, "00000000:0016", "00000000:0000", 0x0A, 0, INO_SSH4),
           tcp_line(1, f"{ip}:0016", f"{hex4('10.0.2.2')}:CD22", 1, 0, INO_SSH_SESSION)]
    if h.connector and h.daemon:
        tcp.append(tcp_line(2, f"{ip}:C29E", f"{hex4(CLOUD_IP)}:01BB", 1, 0, INO_CLOUD))
    t.file("proc/net/tcp", "\n".join(tcp) + "\n")
    t.file("proc/net/tcp6", (
        "  sl  local_address                         remote_address                        "
        "st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        + tcp_line(0, f"{v6_any}:0016", f"{v6_any}:0000", 0x0A, 0, INO_SSH6, True) + "\n"))
    for p in procs:
        proc_pid(t, p)
        t.file(f"proc/{p.pid}/cgroup", cgroup_text(h, unit_of(p, h)))
    cgroup_files(t, h, procs)


# --------------------------------------------------------------------------- sys, lib


def makefile(release: str) -> str:
    ver, rest = release.split("-", 1)
    major, minor, sub = [*ver.split("."), "0"][:3]
    return (f"# SPDX-License-Identifier: GPL-2.0\nVERSION = {major}\nPATCHLEVEL = {minor}\n"
            f"SUBLEVEL = {sub}\nEXTRAVERSION = -{rest}\n")


def sys_and_lib(t: Tree, h: Host) -> None:
    if h.btf:  # struct btf_header: magic 0xeB9F, version 1, flags 0, hdr_len 24, ...
        header = bytes.fromhex("9feb0100") + b"".join(
            n.to_bytes(4, "little") for n in (24, 0, 16, 16, 8))
        btf_type = bytes.fromhex("01000000" "00000001" "04000000" "20000001")  # int
        t.file("sys/kernel/btf/vmlinux", header + btf_type + b"\0int\0\0\0\0")
    if h.secure_boot is not None:
        t.file(f"sys/firmware/efi/efivars/SecureBoot-{EFI_GUID}",
               bytes([6, 0, 0, 0, int(h.secure_boot)]))
    if h.selinux and h.selinux_mode != "disabled":
        t.file("sys/fs/selinux/enforce", "1" if h.selinux_mode == "enforcing" else "0")
    kernel_tree(t, h, h.kernel, h.headers)
    if h.old_kernel:  # the kernel before an update, its headers still installed
        kernel_tree(t, h, h.old_kernel, "installed")


def kernel_tree(t: Tree, h: Host, release: str, headers: str) -> None:
    t.file(f"lib/modules/{release}/modules.dep", "")
    if headers == "absent":
        return
    deb = h.os.family == "debian"
    src = f"usr/src/linux-headers-{release}" if deb else f"usr/src/kernels/{release}"
    t.link(f"lib/modules/{release}/build", f"/{src}")
    if headers == "installed":
        t.file(f"{src}/Makefile", makefile(release))


def render(name: str, h: Host) -> Tree:
    t = Tree()
    etc_files(t, name, h)
    if h.connector:
        connector_files(t, name, h)
        log_files(t, name, h)
    sys_and_lib(t, h)
    proc_files(t, h)
    return t


# --------------------------------------------------------------------------- hosts

RHEL_MODULES = (
    ("nft_fib_inet", 16384, 1, "-"), ("nft_reject_inet", 16384, 6, "-"),
    ("nft_ct", 24576, 16, "-"), ("nft_chain_nat", 16384, 3, "-"),
    ("nf_nat", 57344, 1, "nft_chain_nat,"), ("nf_conntrack", 188416, 2, "nft_ct,nf_nat,"),
    ("nf_tables", 278528, 231, "nft_fib_inet,nft_reject_inet,nft_ct,nft_chain_nat,"),
    ("nfnetlink", 20480, 3, "nf_tables,"), ("sunrpc", 700416, 1, "-"),
    ("virtio_net", 65536, 0, "-"), ("xfs", 2023424, 2, "-"),
    ("libcrc32c", 16384, 3, "nf_nat,nf_conntrack,xfs,"), ("virtio_blk", 20480, 3, "-"),
)
CENTOS7_MODULES = (
    ("ip6t_rpfilter", 12595, 1, "-"), ("nf_conntrack_ipv4", 15053, 2, "-"),
    ("nf_conntrack", 139264, 1, "nf_conntrack_ipv4,"), ("iptable_filter", 12810, 1, "-"),
    ("ip_tables", 27126, 1, "iptable_filter,"), ("sunrpc", 366617, 1, "-"),
    ("virtio_net", 28630, 0, "-"), ("xfs", 997727, 2, "-"),
    ("libcrc32c", 12644, 2, "xfs,nf_conntrack,"), ("virtio_blk", 18323, 3, "-"),
)
DEBIAN_MODULES = (
    ("nft_chain_nat_ipv4", 16384, 1, "-"), ("nf_nat_ipv4", 16384, 1, "nft_chain_nat_ipv4,"),
    ("nf_tables", 143360, 12, "nft_chain_nat_ipv4,"), ("nfnetlink", 16384, 1, "nf_tables,"),
    ("virtio_net", 57344, 0, "-"), ("ext4", 745472, 1, "-"),
    ("crc16", 16384, 1, "ext4,"), ("mbcache", 16384, 1, "ext4,"),
    ("jbd2", 122880, 1, "ext4,"), ("virtio_blk", 20480, 2, "-"),
)
RHEL7_MODULES = (  # a VMware guest
    ("vmw_vsock_vmci_transport", 30577, 1, "-"),
    ("vsock", 36526, 2, "vmw_vsock_vmci_transport,"), ("vmw_balloon", 18094, 0, "-"),
    ("vmw_vmci", 67168, 1, "vmw_vsock_vmci_transport,"), ("iptable_filter", 12810, 1, "-"),
    ("ip_tables", 27126, 1, "iptable_filter,"), ("sunrpc", 366617, 1, "-"),
    ("xfs", 997727, 2, "-"), ("libcrc32c", 12644, 1, "xfs,"), ("sd_mod", 46281, 3, "-"),
    ("crc_t10dif", 12912, 1, "sd_mod,"), ("vmxnet3", 58059, 0, "-"),
    ("vmw_pvscsi", 23113, 2, "-"), ("ata_piix", 35052, 0, "-"), ("libata", 243133, 1, "ata_piix,"),
)
UEK5_MODULES = (  # an Oracle Cloud (KVM) guest, boot volume over iSCSI
    ("iscsi_tcp", 20480, 4, "-"), ("libiscsi_tcp", 24576, 1, "iscsi_tcp,"),
    ("libiscsi", 61440, 2, "iscsi_tcp,libiscsi_tcp,"),
    ("scsi_transport_iscsi", 110592, 3, "iscsi_tcp,libiscsi,"),
    ("iptable_filter", 16384, 1, "-"), ("ip_tables", 28672, 1, "iptable_filter,"),
    ("sunrpc", 364544, 1, "-"), ("virtio_net", 53248, 0, "-"), ("xfs", 1212416, 2, "-"),
    ("libcrc32c", 16384, 1, "xfs,"), ("virtio_scsi", 20480, 2, "-"),
    ("virtio_pci", 24576, 0, "-"),
)
UEK6_MODULES = (
    ("iscsi_tcp", 20480, 4, "-"), ("libiscsi_tcp", 28672, 1, "iscsi_tcp,"),
    ("libiscsi", 61440, 2, "iscsi_tcp,libiscsi_tcp,"),
    ("scsi_transport_iscsi", 114688, 3, "iscsi_tcp,libiscsi,"),
    ("iptable_filter", 16384, 1, "-"), ("bpfilter", 32768, 0, "-"),
    ("ip_tables", 32768, 1, "iptable_filter,"), ("sunrpc", 413696, 1, "-"),
    ("virtio_net", 57344, 0, "-"), ("net_failover", 20480, 1, "virtio_net,"),
    ("failover", 16384, 1, "net_failover,"), ("xfs", 1323008, 2, "-"),
    ("libcrc32c", 16384, 1, "xfs,"), ("virtio_scsi", 20480, 2, "-"),
)
UEK7_MODULES = (
    ("nft_fib_inet", 16384, 1, "-"), ("nft_fib_ipv4", 16384, 1, "nft_fib_inet,"),
    ("nft_reject_inet", 16384, 6, "-"), ("nft_ct", 24576, 16, "-"),
    ("nft_chain_nat", 16384, 3, "-"), ("nf_nat", 53248, 1, "nft_chain_nat,"),
    ("nf_conntrack", 176128, 2, "nft_ct,nf_nat,"),
    ("nf_tables", 290816, 232, "nft_fib_inet,nft_fib_ipv4,nft_reject_inet,nft_ct,nft_chain_nat,"),
    ("nfnetlink", 20480, 3, "nf_tables,"), ("iscsi_tcp", 24576, 4, "-"),
    ("libiscsi_tcp", 32768, 1, "iscsi_tcp,"), ("sunrpc", 720896, 1, "-"),
    ("virtio_net", 61440, 0, "-"), ("xfs", 1835008, 2, "-"),
    ("libcrc32c", 16384, 3, "nf_nat,nf_conntrack,xfs,"), ("virtio_scsi", 24576, 2, "-"),
)
AMZN2_MODULES = (  # an EC2 Nitro instance: ENA network, NVMe disks
    ("sunrpc", 360448, 1, "-"), ("crc32_pclmul", 16384, 0, "-"),
    ("ghash_clmulni_intel", 16384, 0, "-"), ("aesni_intel", 188416, 0, "-"),
    ("crypto_simd", 16384, 1, "aesni_intel,"),
    ("cryptd", 28672, 2, "ghash_clmulni_intel,crypto_simd,"),
    ("glue_helper", 16384, 1, "aesni_intel,"), ("ena", 94208, 0, "-"),
    ("button", 16384, 0, "-"), ("ip_tables", 28672, 0, "-"),
    ("x_tables", 45056, 1, "ip_tables,"), ("xfs", 1224704, 1, "-"),
    ("libcrc32c", 16384, 1, "xfs,"), ("nvme", 32768, 2, "-"), ("nvme_core", 81920, 3, "nvme,"),
)
AMZN2_510_MODULES = (
    ("sunrpc", 569344, 1, "-"), ("crc32_pclmul", 16384, 0, "-"),
    ("ghash_clmulni_intel", 16384, 0, "-"), ("aesni_intel", 380928, 0, "-"),
    ("crypto_simd", 16384, 1, "aesni_intel,"),
    ("cryptd", 24576, 2, "ghash_clmulni_intel,crypto_simd,"), ("ena", 143360, 0, "-"),
    ("button", 20480, 0, "-"), ("xfs", 1560576, 1, "-"), ("libcrc32c", 16384, 1, "xfs,"),
    ("nvme", 49152, 2, "-"), ("nvme_core", 131072, 3, "nvme,"),
)
AMZN2023_MODULES = (
    ("sunrpc", 696320, 1, "-"), ("nls_ascii", 16384, 1, "-"), ("nls_cp437", 20480, 1, "-"),
    ("vfat", 24576, 1, "-"), ("fat", 86016, 1, "vfat,"), ("ena", 151552, 0, "-"),
    ("ghash_clmulni_intel", 16384, 0, "-"), ("button", 24576, 0, "-"),
    ("xfs", 2215936, 1, "-"), ("libcrc32c", 16384, 1, "xfs,"), ("nvme", 53248, 2, "-"),
    ("nvme_core", 180224, 3, "nvme,"), ("dm_mod", 188416, 0, "-"),
)
UBUNTU1804_MODULES = (
    ("nls_iso8859_1", 16384, 1, "-"), ("isofs", 40960, 0, "-"), ("ppdev", 20480, 0, "-"),
    ("parport_pc", 36864, 0, "-"), ("parport", 49152, 2, "ppdev,parport_pc,"),
    ("ip_tables", 28672, 0, "-"), ("x_tables", 40960, 1, "ip_tables,"),
    ("autofs4", 40960, 2, "-"), ("btrfs", 1138688, 0, "-"),
    ("zstd_compress", 163840, 1, "btrfs,"), ("raid6_pq", 114688, 1, "btrfs,"),
    ("virtio_net", 45056, 0, "-"), ("psmouse", 147456, 0, "-"), ("virtio_blk", 20480, 2, "-"),
)
UBUNTU2204_MODULES = (
    ("tls", 106496, 0, "-"), ("nls_iso8859_1", 16384, 1, "-"), ("binfmt_misc", 24576, 1, "-"),
    ("input_leds", 16384, 0, "-"), ("serio_raw", 20480, 0, "-"),
    ("sch_fq_codel", 20480, 2, "-"), ("msr", 16384, 0, "-"), ("efi_pstore", 16384, 0, "-"),
    ("ip_tables", 32768, 0, "-"), ("x_tables", 53248, 1, "ip_tables,"),
    ("autofs4", 49152, 2, "-"), ("crct10dif_pclmul", 16384, 1, "-"),
    ("virtio_net", 61440, 0, "-"), ("net_failover", 20480, 1, "virtio_net,"),
    ("failover", 16384, 1, "net_failover,"), ("virtio_blk", 20480, 2, "-"),
)
DEBIAN12_MODULES = (
    ("nft_chain_nat", 16384, 1, "-"), ("nf_nat", 57344, 1, "nft_chain_nat,"),
    ("nf_conntrack", 188416, 1, "nf_nat,"), ("nf_defrag_ipv6", 24576, 1, "nf_conntrack,"),
    ("nf_defrag_ipv4", 16384, 1, "nf_conntrack,"), ("nf_tables", 307200, 3, "nft_chain_nat,"),
    ("nfnetlink", 20480, 1, "nf_tables,"), ("virtio_net", 65536, 0, "-"),
    ("net_failover", 24576, 1, "virtio_net,"), ("failover", 16384, 1, "net_failover,"),
    ("ext4", 1048576, 1, "-"), ("crc16", 16384, 1, "ext4,"), ("mbcache", 16384, 1, "ext4,"),
    ("jbd2", 184320, 1, "ext4,"), ("virtio_blk", 24576, 2, "-"),
)


def rhel(name: str, version: str, codename: str, major: str) -> str:
    return (f'NAME="Red Hat Enterprise Linux"\nVERSION="{version} ({codename})"\nID="rhel"\n'
            f'ID_LIKE="fedora"\nVERSION_ID="{version}"\nPLATFORM_ID="platform:el{major}"\n'
            f'PRETTY_NAME="{name} {version} ({codename})"\nANSI_COLOR="0;31"\n'
            f'CPE_NAME="cpe:/o:redhat:enterprise_linux:{major}::baseos"\n'
            'HOME_URL="https://www.redhat.com/"\n'
            'BUG_REPORT_URL="https://issues.redhat.com/"\n')


SYSTEMD = "/usr/lib/systemd/systemd"
SWITCHED = (SYSTEMD, "--switched-root", "--system", "--deserialize", "31")
SSHD9 = ("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",)
RHEL9 = OsInfo("rhel", rhel("Red Hat Enterprise Linux", "9.3", "Plow", "9"), SYSTEMD,
               SWITCHED, SSHD9, "/usr/bin/bash", RHEL_MODULES, init_bpf=2, cgroups="v2")
RHEL8 = replace(RHEL9, os_release=rhel("Red Hat Enterprise Linux", "8.9", "Ootpa", "8"),
                sshd_args=("/usr/sbin/sshd", "-D"), init_bpf=0, cgroups="v1")
RHEL10 = replace(RHEL9, os_release=rhel("Red Hat Enterprise Linux", "10.0", "Coughlan", "10"))
CENTOS7 = OsInfo(
    "rhel",
    'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\n'
    'VERSION_ID="7"\nPRETTY_NAME="CentOS Linux 7 (Core)"\nANSI_COLOR="0;31"\n'
    'CPE_NAME="cpe:/o:centos:centos:7"\nHOME_URL="https://www.centos.org/"\n'
    'BUG_REPORT_URL="https://bugs.centos.org/"\n',
    SYSTEMD, (SYSTEMD, "--switched-root", "--system", "--deserialize", "22"),
    ("/usr/sbin/sshd", "-D"), "/usr/bin/bash", CENTOS7_MODULES)
DEBIAN10 = OsInfo(
    "debian",
    'PRETTY_NAME="Debian GNU/Linux 10 (buster)"\nNAME="Debian GNU/Linux"\nVERSION_ID="10"\n'
    'VERSION="10 (buster)"\nVERSION_CODENAME=buster\nID=debian\n'
    'HOME_URL="https://www.debian.org/"\nSUPPORT_URL="https://www.debian.org/support"\n'
    'BUG_REPORT_URL="https://bugs.debian.org/"\n',
    "/lib/systemd/systemd", ("/sbin/init",), ("/usr/sbin/sshd", "-D"), "/bin/bash",
    DEBIAN_MODULES, scan_uid=999, cgroups="hybrid")
RHEL7 = replace(CENTOS7, modules=RHEL7_MODULES, os_release=(
    'NAME="Red Hat Enterprise Linux Server"\nVERSION="7.9 (Maipo)"\nID="rhel"\n'
    'ID_LIKE="fedora"\nVARIANT="Server"\nVARIANT_ID="server"\nVERSION_ID="7.9"\n'
    'PRETTY_NAME="Red Hat Enterprise Linux Server 7.9 (Maipo)"\nANSI_COLOR="0;31"\n'
    'CPE_NAME="cpe:/o:redhat:enterprise_linux:7.9:GA:server"\n'
    'HOME_URL="https://www.redhat.com/"\nBUG_REPORT_URL="https://bugzilla.redhat.com/"\n\n'
    'REDHAT_BUGZILLA_PRODUCT="Red Hat Enterprise Linux 7"\n'
    'REDHAT_BUGZILLA_PRODUCT_VERSION=7.9\n'
    'REDHAT_SUPPORT_PRODUCT="Red Hat Enterprise Linux"\n'
    'REDHAT_SUPPORT_PRODUCT_VERSION="7.9"\n'))


def oracle(release: str, bugs: str) -> str:
    major, minor = release.split(".")
    platform = f'PLATFORM_ID="platform:el{major}"\n' if int(major) >= 8 else ""
    return (f'NAME="Oracle Linux Server"\nVERSION="{release}"\nID="ol"\nID_LIKE="fedora"\n'
            f'VARIANT="Server"\nVARIANT_ID="server"\nVERSION_ID="{release}"\n{platform}'
            f'PRETTY_NAME="Oracle Linux Server {release}"\nANSI_COLOR="0;31"\n'
            f'CPE_NAME="cpe:/o:oracle:linux:{major}:{minor}:server"\n'
            f'HOME_URL="https://linux.oracle.com/"\nBUG_REPORT_URL="{bugs}"\n\n'
            f'ORACLE_BUGZILLA_PRODUCT="Oracle Linux {major}"\n'
            f"ORACLE_BUGZILLA_PRODUCT_VERSION={release}\n"
            'ORACLE_SUPPORT_PRODUCT="Oracle Linux"\n'
            f"ORACLE_SUPPORT_PRODUCT_VERSION={release}\n")


OL7_UEK5 = replace(CENTOS7, os_release=oracle("7.9", "https://bugzilla.oracle.com/"),
                   modules=UEK5_MODULES, user="opc")
OL7_UEK6 = replace(OL7_UEK5, modules=UEK6_MODULES)
OL8_UEK7 = replace(RHEL8, os_release=oracle("8.9", "https://github.com/oracle/oracle-linux"),
                   modules=UEK7_MODULES, user="opc")
AMZN2 = OsInfo(
    "rhel",
    'NAME="Amazon Linux"\nVERSION="2"\nID="amzn"\nID_LIKE="centos rhel fedora"\n'
    'VERSION_ID="2"\nPRETTY_NAME="Amazon Linux 2"\nANSI_COLOR="0;33"\n'
    'CPE_NAME="cpe:2.3:o:amazon:amazon_linux:2"\nHOME_URL="https://amazonlinux.com/"\n'
    'SUPPORT_END="2026-06-30"\n',
    SYSTEMD, (SYSTEMD, "--switched-root", "--system", "--deserialize", "21"),
    ("/usr/sbin/sshd", "-D"), "/usr/bin/bash", AMZN2_MODULES, scan_uid=994, user="ec2-user")
AMZN2_510 = replace(AMZN2, modules=AMZN2_510_MODULES)
AMZN2023 = replace(RHEL9, modules=AMZN2023_MODULES, scan_uid=992, user="ec2-user", os_release=(
    'NAME="Amazon Linux"\nVERSION="2023"\nID="amzn"\nID_LIKE="fedora"\nVERSION_ID="2023"\n'
    'PLATFORM_ID="platform:al2023"\nPRETTY_NAME="Amazon Linux 2023.3.20240108"\n'
    'ANSI_COLOR="0;33"\nCPE_NAME="cpe:2.3:o:amazon:amazon_linux:2023"\n'
    'HOME_URL="https://aws.amazon.com/linux/amazon-linux-2023/"\n'
    'DOCUMENTATION_URL="https://docs.aws.amazon.com/linux/"\n'
    'SUPPORT_URL="https://aws.amazon.com/premiumsupport/"\n'
    'BUG_REPORT_URL="https://github.com/amazonlinux/amazon-linux-2023"\n'
    'VENDOR_NAME="AWS"\nVENDOR_URL="https://aws.amazon.com/"\nSUPPORT_END="2028-03-15"\n'))
UBUNTU_URLS = (
    'HOME_URL="https://www.ubuntu.com/"\nSUPPORT_URL="https://help.ubuntu.com/"\n'
    'BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"\n'
    'PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"\n')
UBUNTU1804 = OsInfo(
    "debian",
    'NAME="Ubuntu"\nVERSION="18.04.6 LTS (Bionic Beaver)"\nID=ubuntu\nID_LIKE=debian\n'
    'PRETTY_NAME="Ubuntu 18.04.6 LTS"\nVERSION_ID="18.04"\n' + UBUNTU_URLS
    + "VERSION_CODENAME=bionic\nUBUNTU_CODENAME=bionic\n",
    "/lib/systemd/systemd", ("/sbin/init",), ("/usr/sbin/sshd", "-D"), "/bin/bash",
    UBUNTU1804_MODULES, scan_uid=998, user="ubuntu", cgroups="hybrid")
MERGED_USR_SYSTEMD = "/usr/lib/systemd/systemd"  # /lib is a link to usr/lib
UBUNTU2204 = OsInfo(
    "debian",
    'PRETTY_NAME="Ubuntu 22.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
    'VERSION="22.04.3 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\n'
    "ID_LIKE=debian\n" + UBUNTU_URLS + "UBUNTU_CODENAME=jammy\n",
    MERGED_USR_SYSTEMD, ("/sbin/init",), SSHD9, "/usr/bin/bash", UBUNTU2204_MODULES,
    init_bpf=2, scan_uid=998, user="ubuntu", cgroups="v2")
DEBIAN12 = OsInfo(
    "debian",
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
    'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
    'HOME_URL="https://www.debian.org/"\nSUPPORT_URL="https://www.debian.org/support"\n'
    'BUG_REPORT_URL="https://bugs.debian.org/"\n',
    MERGED_USR_SYSTEMD, ("/sbin/init",), SSHD9, "/usr/bin/bash", DEBIAN12_MODULES,
    init_bpf=2, scan_uid=999, cgroups="v2")

# The connector's kprobes. Its eBPF code also has TC classifiers (sched_cls, type 3) that
# drop every packet: they serve network isolation, so a host that is not isolated has none.
CORE_PROGS = (2, 2, 2, 2, 2, 2)
CORE_MAPS = ((27, 0, 0, 4194304), (1, 4, 64, 10240), (9, 8, 32, 65536), (2, 4, 264, 1),
             (6, 4, 4096, 1), (1, 16, 8, 8192))
BCC_PROGS = (2,) * 9
BCC_MAPS = ((4, 4, 4, 2), (3, 4, 4, 4), (1, 8, 256, 10240), (6, 4, 4096, 1))
# RHEL 7: process exec, fork and exit kprobes beside the modules; events through a perf
# event array (3.10 has no ring buffer)
PROCESS_PROGS = (2, 2, 2)
PROCESS_MAPS = ((4, 4, 4, 2), (1, 4, 64, 10240), (6, 4, 4096, 1))
ALL_KMODS = ("redirfs", "ampavflt", "ampfsm", "ampnetworkflow")  # file and network

EBPF_BTF = Host(
    "", RHEL9, "5.14.0-362.8.1.el9_3.x86_64", "1.26.0.1182", btf=True, selinux="var",
    bpf_module="enabled", secure_boot=True, progs=CORE_PROGS, maps=CORE_MAPS, updater=True)
EBPF_HEADERS = Host(
    "", DEBIAN10, "4.19.0-26-amd64", "1.24.2.985", headers="installed",
    progs=BCC_PROGS, maps=BCC_MAPS, noise=True, aligned=True, orbital="Enabled")
KMOD = Host(
    "", CENTOS7, "3.10.0-1160.105.1.el7.x86_64", "1.22.0.844", selinux="etc",
    secure_boot=False, kmods=ALL_KMODS, updater=True,
    fault_ids_line=False, behavioural="Audit", mem=(3880412, 1920112, 2998140))
DEGRADED = {"mode": "Degraded"}
D, S = PID_DAEMON, "ampscansvc"
SCAN_FAILED: tuple[Event, ...] = (
    (20, "ampdaemon", D, "Info", "Starting scan service"),
    (21, S, 1302, "Error", f"Cannot load /{AMP}/clamav/daily.cvd: malformed header"),
    (21, "ampdaemon", D, "Error", "Scan service failed to start (exit status 2)"),
)

# Bases of the hosts named <distro><version>-<what>. Kernels before 4.15 run the modules;
# 4.15+ only eBPF: CO-RE where BTF and connector 1.25+, else built with the headers.
RHEL7_KERNEL = "3.10.0-1160.105.1.el7.x86_64"
UEK5_KERNEL = "4.14.35-2047.530.3.el7uek.x86_64"
UEK6_KERNEL = "5.4.17-2136.326.6.el7uek.x86_64"
UEK7_KERNEL = "5.15.0-200.131.27.el8uek.x86_64"
AMZN2_KERNEL = "4.14.336-257.562.amzn2.x86_64"
AMZN2_510_KERNEL = "5.10.205-195.807.amzn2.x86_64"
AMZN2023_KERNEL = "6.1.66-91.160.amzn2023.x86_64"
UBUNTU1804_KERNEL, UBUNTU1804_OLD = "4.15.0-213-generic", "4.15.0-212-generic"
RHEL7_KMOD = Host(
    "", RHEL7, RHEL7_KERNEL, "1.23.0.915", selinux="etc", secure_boot=False, kmods=ALL_KMODS,
    updater=True, mem=(3880412, 1920112, 2998140))
RHEL7_MIXED = replace(  # the installer added cisco-secure-bpf: RHEL 7's policy lacks the rule
    RHEL7_KMOD, connector="1.25.1.1043", headers="installed", bpf_module="enabled",
    progs=PROCESS_PROGS, maps=PROCESS_MAPS)
OL7_UEK5_KMOD = Host(
    "", OL7_UEK5, UEK5_KERNEL, "1.23.0.915", selinux="etc", kmods=ALL_KMODS, updater=True)
OL7_UEK6_HEADERS = Host(
    "", OL7_UEK6, UEK6_KERNEL, "1.24.2.985", headers="installed", selinux="etc",
    bpf_module="enabled", progs=BCC_PROGS, maps=BCC_MAPS, updater=True)
OL8_UEK7_CORE = Host(
    "", OL8_UEK7, UEK7_KERNEL, "1.25.1.1043", btf=True, selinux="var", bpf_module="enabled",
    secure_boot=False, progs=CORE_PROGS, maps=CORE_MAPS, updater=True)
AMZN2_KMOD = Host(  # Amazon Linux 2 ships SELinux disabled
    "", AMZN2, AMZN2_KERNEL, "1.24.2.985", selinux="etc", selinux_mode="disabled",
    kmods=ALL_KMODS, updater=True, mem=(3964808, 2104332, 3101228))
AMZN2023_CORE = Host(  # Amazon Linux 2023 ships SELinux permissive
    "", AMZN2023, AMZN2023_KERNEL, "1.26.0.1182", btf=True, selinux="var",
    selinux_mode="permissive", progs=CORE_PROGS, maps=CORE_MAPS, updater=True)
UBUNTU1804_HEADERS = Host(
    "", UBUNTU1804, UBUNTU1804_KERNEL, "1.24.2.985", headers="installed", progs=BCC_PROGS,
    maps=BCC_MAPS, noise=True, updater=True)
UBUNTU2204_CORE = Host(  # CO-RE needs no headers: none installed
    "", UBUNTU2204, "5.15.0-91-generic", "1.25.1.1043", btf=True, headers="absent",
    secure_boot=False, progs=CORE_PROGS, maps=CORE_MAPS, noise=True, updater=True)
DEBIAN12_CORE = Host(
    "", DEBIAN12, "6.1.0-17-amd64", "1.26.0.1182", btf=True, headers="absent",
    secure_boot=True, progs=CORE_PROGS, maps=CORE_MAPS, aligned=True, updater=True)
AT_START = {"fault_time": 21, **DEGRADED}  # raised while the connector started
BPF_DENIED: tuple[Event, ...] = (
    (20, "ampdaemon", D, "Error", "bpf(BPF_MAP_CREATE) denied: Permission denied"),)
MODULE_KEY = ("Request for unknown module key 'Cisco Systems, Inc.: Secure Endpoint kernel "
              "module signing key: 5e2b8a0c41d97f3e6a1c0b9d8e7f6a5b4c3d2e1f' err -11")

HOSTS: dict[str, Host] = {
    "healthy-ebpf-btf": replace(
        EBPF_BTF, description="RHEL 9.3, connector 1.26 on eBPF CO-RE (BTF), SELinux "
        "enforcing, Secure Boot on, no faults"),
    "healthy-ebpf-headers": replace(
        EBPF_HEADERS, description="Debian 10, kernel 4.19 without BTF, connector 1.24 eBPF "
        "built against installed headers, BIOS boot, noisy aligned ampcli, no faults"),
    "healthy-kmod": replace(
        KMOD, description="CentOS 7.9, connector 1.22 with redirfs/ampavflt/ampfsm (file) "
        "and ampnetworkflow (network) kernel modules, SELinux enforcing, no faults (no Fault "
        "IDs line)"),
    "no-connector": replace(
        EBPF_BTF, description="RHEL 9.3 without the connector (no /opt/cisco, no processes)",
        connector=None, progs=(), maps=(), bpf_module="none", scan_pid=None, updater=False),
    "fault-5-scan-user": replace(
        EBPF_BTF, description="fault 5: cisco-amp-scan-svc user/group missing, "
        "USERGROUPS_ENAB no, scan service as root, opt/cisco/amp/etc mode 0777",
        scan_user=False, usergroups_enab=False, scan_root=True, etc_mode=0o777,
        faults=(fault(5, "Major"),), log=(
            (19, "ampdaemon", D, "Error", f"Unable to look up user {SCAN_USER}"),
            (20, "ampdaemon", D, "Warning", "Scan service will run as root"),
            (20, "ampdaemon", D, "Warning", f"Unexpected permissions 0777 on /{AMP}/etc"))),
    "fault-6-scan-restarting": replace(
        EBPF_BTF, description="fault 6: scan service crashed and was restarted four times in "
        "five minutes (ampscansvc now pid 48213, started 80 s ago)",
        scan_pid=48213, scan_start=532000, faults=(fault(6, "Major"),), fault_time=5228,
        log=tuple(
            ev for t, old, new in ((5041, 1302, 8841), (5133, 8841, 15220),
                                   (5227, 15220, 27703), (5320, 27703, 48213))
            for ev in (
                (t - 1, S, old, "Error",
                 "Scan engine crashed scanning /home/admin/Downloads/bundle.tar.xz"),
                (t, "ampdaemon", D, "Warning",
                 f"Scan service (pid {old}) exited on signal 11; restarting"),
                (t + 1, S, new, "Info", "Scan service starting"),
                (t + 4, S, new, "Info", "Scan service ready")))),
    "fault-7-scan-failed": replace(
        EBPF_BTF, description="fault 7: scan service not running, daily.cvd truncated to "
        "300 bytes, MemAvailable 180 MB", scan_pid=None, daily_truncate=300,
        mem=(1863388, 121840, 184320), mode="Degraded", scan="Scanning disabled",
        last_scan="2025-11-24 03:40:02 AM", faults=(fault(7, "Critical"),), fault_time=22,
        log=(*SCAN_FAILED, (22, "ampdaemon", D, "Warning", "Low memory: 180 MB available"))),
    "fault-8-file-monitoring": replace(
        KMOD, description="fault 8: CentOS 7 with Secure Boot on: no connector module "
        "loads (ampavflt, ampfsm, redirfs); device flow correlation is off in its policy",
        secure_boot=True, kmods=(), flow_correlation=False, **DEGRADED,
        faults=(fault(8, "Critical"),), log=(
            (20, "ampdaemon", D, "Error", "Failed to load kernel module ampfsm: "
             "Required key not available"),)),
    "fault-9-network-monitoring": replace(
        KMOD, description="fault 9: CentOS 7, the file modules loaded but ampnetworkflow "
        "not (it disagrees with the kernel), Secure Boot off",
        kmods=("redirfs", "ampavflt", "ampfsm"), **DEGRADED, faults=(fault(9, "Critical"),),
        log=((20, "ampdaemon", D, "Error", "Failed to load kernel module ampnetworkflow: "
              "Invalid module format"),)),
    "fault-11-kernel-headers": replace(
        EBPF_HEADERS, description="fault 11: Debian 10 without BTF, lib/modules/R/build "
        "dangling (headers removed), no BPF programs loaded", headers="dangling", progs=(),
        maps=(), **DEGRADED, faults=(fault(11, "Critical"),), log=(
            (20, "ampdaemon", D, "Error", "Kernel headers not found for 4.19.0-26-amd64"),)),
    "fault-16-incompatible-kernel": replace(
        EBPF_BTF, description="fault 16: RHEL 10 kernel 6.12 newer than connector 1.26 "
        "supports; no BPF programs loaded", os=RHEL10, kernel="6.12.0-55.el10.x86_64",
        progs=(), maps=(), **DEGRADED, faults=(fault(16, "Critical"),), log=(
            (20, "ampdaemon", D, "Error", "Kernel 6.12.0-55.el10.x86_64 is not supported"),)),
    "fault-18-overloaded": replace(
        EBPF_BTF, description="fault 18 (Critical): event monitoring overloaded, daemon "
        "busy", daemon_cpu=(298450, 101220), **DEGRADED, faults=(fault(18, "Critical"),),
        log=((2990, "ampdaemon", D, "Warning", "Event queue full; dropping to critical "
              "events only"),)),
    "fault-19-selinux": replace(
        EBPF_BTF, description="fault 19: RHEL 8.9 with BTF, SELinux enforcing, "
        "cisco-secure-bpf module disabled, no BPF programs loaded", os=RHEL8,
        kernel="4.18.0-513.5.1.el8_9.x86_64", bpf_module="disabled", secure_boot=False,
        progs=(), maps=(), **DEGRADED, faults=(fault(19, "Critical"),), log=(
            (20, "ampdaemon", D, "Error", "bpf(BPF_MAP_CREATE) denied: Permission denied"),)),
    "multi-fault": replace(
        EBPF_BTF, description="faults 7 (Critical) and 23 (Major, not in the catalog); "
        "scan service not running", scan_pid=None, **DEGRADED, scan="Scanning disabled",
        faults=(fault(7, "Critical"), fault(23, "Major")), log=SCAN_FAILED),
    "daemon-dead": replace(
        EBPF_BTF, description="connector installed but ampdaemon not running (it died; its "
        "scan service went with it): ampcli prints 'Trying to connect...' and exits 1",
        daemon=False, scan_pid=None, updater=False, progs=(), maps=(), ampcli_answer="no_daemon",
        log=((5100, "ampdaemon", D, "Error", "Terminating on signal 6 (Aborted)"),)),
    "ampcli-silent": replace(
        EBPF_HEADERS, description="ampdaemon runs but ampcli status never answers (connects, "
        "then hangs: a stuck daemon); serve it with --ampcli.timeout 1 for quick scrapes",
        ampcli_answer="hang"),
    # ---------------------------------------------------- each distribution family
    "rhel7-kmod-healthy": replace(
        RHEL7_KMOD, description="RHEL 7.9 (3.10), connector 1.23 on kernel modules only: "
        "redirfs/ampavflt/ampfsm for files, ampnetworkflow for the network; SELinux "
        "enforcing, Secure Boot off, no faults"),
    "rhel7-kmod-ebpf-healthy": replace(
        RHEL7_MIXED, description="RHEL 7.9, connector 1.25: kernel modules for file and "
        "network monitoring plus 3 eBPF kprobes for processes (built with the installed "
        "kernel-devel, cisco-secure-bpf module enabled), no faults"),
    "rhel7-kmod-ebpf-fault-19-no-selinux-module": replace(
        RHEL7_MIXED, description="fault 19 on RHEL 7.9: all four modules loaded, SELinux "
        "enforcing, cisco-secure-bpf never installed (policycoreutils-python missing), "
        "map_create denied in audit.log, no BPF programs held", bpf_module="none",
        progs=(), maps=(), **AT_START, faults=(fault(19, "Critical"),),
        avc_denied=("map_create",), log=(
            (19, "ampdaemon", D, "Error", "Cannot install SELinux policy module "
             "cisco-secure-bpf: policycoreutils-python is not installed"), *BPF_DENIED)),
    "rhel7-ebpf-fault-8-secure-boot": replace(
        RHEL7_MIXED, description="fault 8 on RHEL 7.9 while the connector holds its 3 eBPF "
        "process kprobes: Secure Boot on, so no connector module loads (ampfsm, ampavflt, "
        "redirfs missing: 'Required key not available'); device flow correlation off in "
        "the policy, so no fault 9", secure_boot=True, kmods=(), flow_correlation=False,
        **AT_START, faults=(fault(8, "Critical"),),
        kernel_log=((20, MODULE_KEY), (20, MODULE_KEY)), log=(
            (19, "ampdaemon", D, "Warning", "UEFI Secure Boot is enabled"),
            (20, "ampdaemon", D, "Error", "Failed to load kernel module ampavflt: "
             "Required key not available"),
            (20, "ampdaemon", D, "Error", "Failed to load kernel module ampfsm: "
             "Required key not available"))),
    "rhel7-kmod-fault-9-ampnetworkflow": replace(
        RHEL7_KMOD, description="fault 9 on RHEL 7.9: file modules loaded, ampnetworkflow "
        "rejected by the kernel (built for another kernel: 'disagrees about version of "
        "symbol module_layout' in /var/log/messages), Secure Boot off",
        kmods=("redirfs", "ampavflt", "ampfsm"), **AT_START, faults=(fault(9, "Critical"),),
        kernel_log=((20, "ampnetworkflow: disagrees about version of symbol module_layout"),),
        log=((20, "ampdaemon", D, "Error", "Failed to load kernel module ampnetworkflow: "
              "Invalid module format"),)),
    "ol7-uek5-kmod-healthy": replace(
        OL7_UEK5_KMOD, description="Oracle Linux 7.9 on UEK5 (4.14, still has jprobes), "
        "connector 1.23 on all four kernel modules, SELinux enforcing, no faults"),
    "ol7-uek6-ebpf-headers-healthy": replace(
        OL7_UEK6_HEADERS, description="Oracle Linux 7.9 on UEK6 (5.4, no BTF), connector "
        "1.24 eBPF built with kernel-uek-devel, cisco-secure-bpf enabled, no faults"),
    "ol7-uek6-fault-11-kernel-headers": replace(
        OL7_UEK6_HEADERS, description="fault 11 on Oracle Linux 7.9 UEK6: kernel-uek-devel "
        "removed, lib/modules/R/build dangling, no BPF programs held", headers="dangling",
        progs=(), maps=(), **AT_START, faults=(fault(11, "Critical"),), log=(
            (20, "ampdaemon", D, "Error", f"Kernel headers not found for {UEK6_KERNEL}"),)),
    "ol8-uek7-ebpf-core-healthy": replace(
        OL8_UEK7_CORE, description="Oracle Linux 8.9 on UEK7 (5.15, BTF), connector 1.25 "
        "on eBPF CO-RE, SELinux enforcing with cisco-secure-bpf, no faults"),
    "amzn2-kmod-healthy": replace(
        AMZN2_KMOD, description="Amazon Linux 2 on 4.14, connector 1.24 on all four kernel "
        "modules, SELinux disabled, BIOS boot, no faults"),
    "amzn2-kmod-fault-8-ampfsm": replace(
        AMZN2_KMOD, description="fault 8 on Amazon Linux 2 (4.14): ampfsm not loaded, no "
        "build of it for this kernel (build one from cisco/ampfsm); redirfs, ampavflt and "
        "ampnetworkflow loaded", kmods=("redirfs", "ampavflt", "ampnetworkflow"),
        **AT_START, faults=(fault(8, "Critical"),), log=(
            (20, "ampdaemon", D, "Error", f"No ampfsm kernel module for {AMZN2_KERNEL}: "
             "kernel not supported; build ampfsm for it (connector 1.16+)"),)),
    "amzn2-kernel510-ebpf-core-healthy": replace(
        AMZN2_KMOD, description="Amazon Linux 2 on its 5.10 kernel (BTF): no jprobes, so "
        "connector 1.26 runs eBPF CO-RE only, no modules, no faults", os=AMZN2_510,
        kernel=AMZN2_510_KERNEL, connector="1.26.0.1182", btf=True, kmods=(),
        progs=CORE_PROGS, maps=CORE_MAPS),
    "amzn2023-ebpf-core-healthy": replace(
        AMZN2023_CORE, description="Amazon Linux 2023 (6.1, BTF), connector 1.26 on eBPF "
        "CO-RE, SELinux permissive without cisco-secure-bpf, no faults"),
    "amzn2023-fault-18-overloaded-major": replace(
        AMZN2023_CORE, description="fault 18 (Major) on Amazon Linux 2023: event monitoring "
        "overloaded, the connector watches a smaller set of critical events, daemon busy",
        daemon_cpu=(241880, 88410), **DEGRADED, faults=(fault(18, "Major"),),
        fault_time=4210, log=((4209, "ampdaemon", D, "Warning", "Event queue full; "
                               "monitoring a reduced set of critical events"),)),
    "ubuntu1804-ebpf-headers-healthy": replace(
        UBUNTU1804_HEADERS, description="Ubuntu 18.04 (4.15: no jprobes, no BTF), "
        "connector 1.24 eBPF built with linux-headers-4.15.0-213-generic, no faults"),
    "ubuntu1804-fault-11-kernel-headers": replace(
        UBUNTU1804_HEADERS, description="fault 11 on Ubuntu 18.04: booted 4.15.0-213 after "
        "an update, headers installed only for 4.15.0-212 (no build link for the running "
        "kernel), no BPF programs held", headers="absent", old_kernel=UBUNTU1804_OLD,
        progs=(), maps=(), **AT_START, faults=(fault(11, "Critical"),), log=(
            (20, "ampdaemon", D, "Error",
             f"Kernel headers not found for {UBUNTU1804_KERNEL}"),)),
    "ubuntu2204-ebpf-core-healthy": replace(
        UBUNTU2204_CORE, description="Ubuntu 22.04 (5.15, BTF), connector 1.25 on eBPF "
        "CO-RE without kernel headers, no faults"),
    "debian12-ebpf-core-healthy": replace(
        DEBIAN12_CORE, description="Debian 12 (6.1, BTF), connector 1.26 on eBPF CO-RE "
        "without kernel headers, Secure Boot on, aligned ampcli, no faults"),
    "debian12-fault-16-backports-kernel": replace(
        DEBIAN12_CORE, description="fault 16 on Debian 12: a bookworm-backports kernel "
        "(6.5) the connector does not support yet; no BPF programs loaded",
        kernel="6.5.0-0.deb12.4-amd64", progs=(), maps=(), **AT_START,
        faults=(fault(16, "Critical"),), log=(
            (20, "ampdaemon", D, "Error", "Kernel 6.5.0-0.deb12.4-amd64 is not supported"),)),
    "ubuntu2204-fault-7-scan-failed": replace(
        UBUNTU2204_CORE, description="fault 7 on Ubuntu 22.04: the scan service failed to "
        "start on a truncated daily.cvd (memory is ample)", scan_pid=None, daily_truncate=300,
        mode="Degraded", scan="Scanning disabled", faults=(fault(7, "Critical"),),
        fault_time=22, log=SCAN_FAILED),
    "ol8-uek7-fault-19-selinux-module-disabled": replace(
        OL8_UEK7_CORE, description="fault 19 on Oracle Linux 8 UEK7: SELinux enforcing, "
        "cisco-secure-bpf disabled (semodule -d), no BPF programs held",
        bpf_module="disabled", progs=(), maps=(), **AT_START,
        faults=(fault(19, "Critical"),), log=BPF_DENIED),
    "rhel9-ebpf-core-no-selinux-module-healthy": replace(
        EBPF_BTF, description="RHEL 9.3, connector 1.26 holds its eBPF programs under "
        "enforcing SELinux without the cisco-secure-bpf module (the loaded policy allows "
        "them), no faults", bpf_module="none"),
    "rhel9-ebpf-core-base-policy-rule-healthy": replace(
        EBPF_BTF, description="RHEL 9.3, the base policy module grants unconfined_service_t "
        "self:bpf (no cisco-secure-bpf module), connector 1.26 on eBPF CO-RE, no faults",
        bpf_module="none", base_bpf_rule=True),
    "rhel9-fault-19-selinux-module-missing": replace(
        EBPF_BTF, description="fault 19 on RHEL 9.3: SELinux enforcing, cisco-secure-bpf "
        "missing and the base policy without the rule, map_create denied in audit.log, no "
        "BPF programs held", bpf_module="none", progs=(), maps=(), **AT_START,
        faults=(fault(19, "Critical"),), avc_denied=("map_create",), log=(
            (19, "ampdaemon", D, "Error", "Cannot install SELinux policy module "
             "cisco-secure-bpf: semodule exited with status 1"), *BPF_DENIED)),
}


def build(dest: Path, names: Optional[list[str]] = None) -> dict[str, Path]:
    """Build the named hosts (default all) into dest/NAME; return name -> root."""
    built = {}
    for name in names or list(HOSTS):
        if name not in HOSTS:
            raise KeyError(f"unknown host {name!r}; known: {', '.join(HOSTS)}")
        root = Path(dest) / name
        if root.is_symlink() or root.is_file():
            root.unlink()
        elif root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        render(name, HOSTS[name]).write(root)
        built[name] = root
    return built


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", nargs="?", type=Path, help="directory to build into")
    parser.add_argument("names", nargs="*", metavar="NAME", help="hosts (default: all)")
    parser.add_argument("--list", action="store_true", help="list the hosts and exit")
    args = parser.parse_args(argv)
    if args.list:
        width = max(map(len, HOSTS)) + 1
        for name, host in HOSTS.items():
            print(f"{name:{width}} {host.description}")
        return 0
    if args.dest is None:
        parser.error("DEST is required")
    unknown = [n for n in args.names if n not in HOSTS]
    if unknown:
        parser.error(f"unknown host(s): {', '.join(unknown)}; see --list")
    for name, root in build(args.dest, args.names or None).items():
        print(f"{name}: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
