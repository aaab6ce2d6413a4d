"""How the connector monitors this host, one subsystem at a time.

The connector does not pick one "generation" per host: a RHEL 7 connector can watch file
activity with its kernel modules and run eBPF programs for the rest (fault 19's own text
names RHEL 7 and Oracle Linux 7). So each subsystem is decided on its own evidence:

- file monitoring (fault 8): the file modules `ampfsm` (renames: "Monitor file copies and
  moves") and `ampavflt` on `redirfs` (on-access scanning), or eBPF programs;
- network monitoring (fault 9): the module `ampnetworkflow` (socket send, receive,
  connect, accept: "Device Flow Correlation"), or eBPF programs;
- eBPF (the preconditions behind faults 11 and 19): used or tried wherever the connector
  holds BPF programs, reports fault 11 or 19, or runs on a 4.15+ kernel; built with CO-RE
  on a BTF kernel by connector 1.25+, else compiled against the running kernel's headers.

Evidence, strongest first: the faults the connector reports (its own word: fault 8 or 9
means it tried the modules, fault 11 that it needs headers; an inference never hides a
cause of a fault it reports); the modules in proc/modules; BPF programs held by its
processes; the kernel release (the modules need jprobes, which Linux removed in 4.15, so
4.15+ kernels run eBPF only); BTF; the connector version (unknown unless global.xml names
it). Sources: Cisco's GPL module repositories cisco/ampfsm and cisco/ampnetworkflow, the
eBPF repository cisco-open/secure-endpoint-ebpf, Cisco fault pages 214523, 215549 and
220575 (see docs/monitoring-model.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

SUBSYSTEMS = ("file", "network")
MACHINERY = ("kernel_modules", "ebpf")
EBPF_MODES = ("core", "headers", "none")

# The connector's kernel modules, by the subsystem they serve.
FILE_MODULES = ("ampavflt", "ampfsm")  # the ones fault 8 is about
FILE_MODULES_ANY = (*FILE_MODULES, "redirfs")  # any of these loaded: modules are in use
NETWORK_MODULES = ("ampnetworkflow",)
MODULES_BY_SUBSYSTEM = {"file": FILE_MODULES, "network": NETWORK_MODULES}
CONNECTOR_MODULES = ("ampavflt", "ampfsm", "ampnetworkflow", "redirfs")

FAULT_BY_SUBSYSTEM = {"file": 8, "network": 9}
EBPF_FAULTS = frozenset({11, 19})
NO_JPROBES_KERNEL = (4, 15)  # jprobes removed: the modules cannot load from here on
CORE_MIN_CONNECTOR = (1, 25)


@dataclass(frozen=True)
class Evidence:
    kernel: Optional[tuple[int, int]]
    btf: bool
    connector_version: Optional[tuple[int, ...]]  # None: global.xml does not say
    bpf_programs_held: int
    modules_loaded: frozenset[str]
    reported_faults: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Machinery:
    """What the connector uses, or tries to use, for each part of its monitoring."""

    file: str  # kernel_modules | ebpf
    network: str  # kernel_modules | ebpf
    ebpf: str  # core | headers | none
    why: dict  # {"file" | "network" | "ebpf": the evidence that decided it, in words}
    bpf_programs_held: int = 0  # by the connector's processes: evidence of its own

    def subsystem(self, name: str) -> str:
        return self.file if name == "file" else self.network

    @property
    def generation(self) -> str:
        """The old one-word summary (cisco_amp_monitoring_generation): the file
        subsystem's machinery, eBPF named by how it is built."""
        if self.file == "kernel_modules":
            return "kernel_modules"
        return "ebpf_core" if self.ebpf == "core" else "ebpf_headers"


def _subsystem(name: str, e: Evidence) -> tuple[str, str]:
    fault = FAULT_BY_SUBSYSTEM[name]
    modules = FILE_MODULES_ANY if name == "file" else NETWORK_MODULES
    if fault in e.reported_faults:
        return "kernel_modules", f"the connector reports fault {fault}, about its modules"
    loaded = sorted(m for m in modules if m in e.modules_loaded)
    if loaded:
        return "kernel_modules", f"{', '.join(loaded)} loaded"
    tried = sorted(e.reported_faults & EBPF_FAULTS)
    if tried:
        return "ebpf", f"no module of it loaded; the connector reports fault " \
            f"{', '.join(map(str, tried))}: it tried eBPF"
    if e.kernel is not None and e.kernel >= NO_JPROBES_KERNEL:
        return "ebpf", "kernel 4.15+, where the modules cannot load: no jprobes"
    if e.bpf_programs_held:
        return "ebpf", f"no module of it loaded; the connector holds {e.bpf_programs_held} " \
            "BPF programs"
    return "kernel_modules", "a kernel before 4.15 with no BPF program held: the modules " \
        "are what it can use"


def _ebpf(e: Evidence, file: str, network: str) -> tuple[str, str]:
    reported = sorted(e.reported_faults & EBPF_FAULTS)
    if e.bpf_programs_held:
        why = f"the connector holds {e.bpf_programs_held} BPF programs"
    elif reported:
        why = "the connector reports fault " + ", ".join(map(str, reported))
    elif "ebpf" in (file, network):
        why = "a subsystem runs on eBPF"
    else:
        return "none", "no BPF program held, no eBPF fault, a kernel before 4.15"
    if 11 in e.reported_faults:
        return "headers", why + "; fault 11 says it builds against the kernel's headers"
    version = e.connector_version
    if e.btf and (version is None or version[:2] >= CORE_MIN_CONNECTOR):
        return "core", why + "; BTF present" + (
            "" if version is not None else " (connector version unknown: taken as 1.25+)")
    if e.btf:
        return "headers", why + "; BTF present but the connector is older than 1.25"
    return "headers", why + "; no BTF: built against the kernel's headers"


def decide(e: Evidence) -> Machinery:
    file, why_file = _subsystem("file", e)
    network, why_network = _subsystem("network", e)
    ebpf, why_ebpf = _ebpf(e, file, network)
    return Machinery(file, network, ebpf,
                     {"file": why_file, "network": why_network, "ebpf": why_ebpf},
                     e.bpf_programs_held)


def gather(kernel, connector_version: Optional[str], snapshot,
           reported_faults: frozenset[int] = frozenset()) -> Evidence:
    """Evidence from this scrape's kernel facts (linux.KernelFacts), the connector's version
    and the process table."""
    from amp_exporter.host import connector_files, linux

    return Evidence(
        kernel=linux.parse_release(kernel.release),
        btf=kernel.btf,
        connector_version=connector_files.version_tuple(connector_version),
        bpf_programs_held=sum(p.bpf_programs for p in snapshot.processes),
        modules_loaded=frozenset(m for m in CONNECTOR_MODULES if m in kernel.modules),
        reported_faults=reported_faults,
    )
