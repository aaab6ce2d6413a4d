"""Which generation of the connector's monitoring a host runs.

- ebpf_core: eBPF programs loaded with BTF (CO-RE); kernel headers not needed.
- ebpf_headers: eBPF programs compiled on the host against the running kernel's headers
  (no BTF, or a connector before 1.25).
- kernel_modules: the ampavflt / ampfsm kernel modules (kernels before 4.18).

Evidence first: BPF program fds held by the connector, amp modules loaded. A connector
that is failing shows neither; then the faults it reports tell which machinery failed
(11 and 19 are eBPF faults, 8 and 9 kernel-module ones: RHEL 7 kernels run either,
depending on the connector), and last the kernel itself (before 4.18: modules; with BTF
and a connector 1.25+: CO-RE). A cause check that belongs to another generation is
never a cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

GENERATIONS = ("ebpf_core", "ebpf_headers", "kernel_modules")
AMP_MODULES = ("ampavflt", "ampfsm")
EBPF_MIN_KERNEL = (4, 18)
CORE_MIN_CONNECTOR = (1, 25)


@dataclass(frozen=True)
class Evidence:
    kernel: Optional[tuple[int, int]]
    btf: bool
    connector_version: Optional[tuple[int, ...]]
    bpf_programs_held: int
    amp_modules_loaded: tuple[str, ...]
    reported_faults: frozenset[int] = frozenset()


EBPF_FAULTS = frozenset({11, 19})
MODULE_FAULTS = frozenset({8, 9})


def detect(e: Evidence) -> str:
    core_capable = e.btf and (e.connector_version is None or
                              e.connector_version[:2] >= CORE_MIN_CONNECTOR)
    if e.bpf_programs_held > 0:
        return "ebpf_core" if core_capable else "ebpf_headers"
    if e.amp_modules_loaded:
        return "kernel_modules"
    if e.reported_faults & EBPF_FAULTS and not e.reported_faults & MODULE_FAULTS:
        return "ebpf_core" if core_capable else "ebpf_headers"
    if e.reported_faults & MODULE_FAULTS and not e.reported_faults & EBPF_FAULTS:
        return "kernel_modules"
    if e.kernel is not None and e.kernel < EBPF_MIN_KERNEL:
        return "kernel_modules"
    return "ebpf_core" if core_capable else "ebpf_headers"


def gather(paths, snapshot, reported_faults: frozenset[int] = frozenset()) -> Evidence:
    """Evidence from the host tree and the process table (raises OSError/ValueError)."""
    from amp_exporter import connector_files, linux

    modules = linux.loaded_modules(paths)
    return Evidence(
        kernel=linux.parse_release(linux.kernel_release(paths)),
        btf=linux.btf_available(paths),
        connector_version=connector_files.version_tuple(connector_files.connector_version(paths)),
        bpf_programs_held=sum(p.bpf_programs for p in snapshot.processes),
        amp_modules_loaded=tuple(m for m in AMP_MODULES if m in modules),
        reported_faults=reported_faults,
    )
