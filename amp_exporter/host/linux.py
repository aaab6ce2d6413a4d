"""Kernel facts read from a host tree: release, modules, BTF, Secure Boot, memory, headers.

Parsers take text and raise ValueError on input they cannot make sense of;
readers take HostPaths and raise OSError as open() does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Optional

from amp_exporter.host.paths import HostPaths, open_host_file, read_first_line, read_text

SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def parse_release(release: str) -> tuple[int, int]:
    """'5.14.0-362.el9.x86_64' -> (5, 14)."""
    match = re.match(r"^\s*(\d+)\.(\d+)", release)
    if not match:
        raise ValueError(f"not a kernel release: {release[:40]!r}")
    return int(match.group(1)), int(match.group(2))


def kernel_release(paths: HostPaths) -> str:
    release = read_first_line(paths.proc("sys", "kernel", "osrelease"))
    parse_release(release)
    return release


def parse_modules(text: str) -> dict[str, str]:
    """proc/modules -> {name: state}. Lines: name size refcount deps state address [taint]."""
    modules = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[1].isdigit():
            modules[fields[0]] = fields[4]
        elif fields:
            raise ValueError(f"not a proc/modules line: {line[:60]!r}")
    return modules


def loaded_modules(paths: HostPaths) -> dict[str, str]:
    try:
        return parse_modules(read_text(paths.proc("modules")))
    except FileNotFoundError:
        return {}  # a kernel built without loadable modules


def btf_available(paths: HostPaths) -> bool:
    return os.path.exists(paths.sys("kernel", "btf", "vmlinux"))


@dataclass(frozen=True)
class KernelFacts:
    """What the kernel collector and the machinery model both need, read once a scrape."""

    release: str
    modules: dict[str, str]  # proc/modules: name -> state
    secure_boot: Optional[bool]  # None: a BIOS boot
    btf: bool


def kernel_facts(paths: HostPaths) -> KernelFacts:
    """Raises OSError as open() does, ValueError on a release or proc/modules it cannot read."""
    return KernelFacts(kernel_release(paths), loaded_modules(paths), secure_boot(paths),
                       btf_available(paths))


def parse_efivar_bool(data: bytes) -> bool:
    """An efivar file: 4 attribute bytes, then the value (SecureBoot: one byte, 1 = on)."""
    if len(data) < 5:
        raise ValueError(f"efivar too short: {len(data)} bytes")
    return data[4] == 1


def secure_boot(paths: HostPaths) -> Optional[bool]:
    """True/False on a UEFI host; None on a BIOS boot (no sys/firmware/efi)."""
    if not os.path.isdir(paths.sys("firmware", "efi")):
        return None
    try:
        with open_host_file(paths.sys("firmware", "efi", "efivars", SECURE_BOOT_VAR)) as f:
            return parse_efivar_bool(f.read(64))
    except FileNotFoundError:
        return False  # UEFI without the variable: Secure Boot not supported, so off


def parse_meminfo(text: str) -> dict[str, int]:
    """proc/meminfo -> {field: bytes} ('MemAvailable:  1234 kB')."""
    values = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        factor = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
        values[key.strip()] = int(parts[0]) * factor
    if "MemTotal" not in values:
        raise ValueError("no MemTotal in meminfo")
    return values


def meminfo(paths: HostPaths) -> dict[str, int]:
    return parse_meminfo(read_text(paths.proc("meminfo")))


def headers_installed(paths: HostPaths, release: str) -> bool:
    """lib/modules/RELEASE/build resolves (inside the root) to a directory."""
    target = paths.resolve(f"/lib/modules/{release}/build")
    return target is not None and target.is_dir()
