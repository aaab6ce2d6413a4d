"""What a collector is, and the registry collectors join.

Each collector module registers a class with `@register`; scrape.py turns the registry
into `--collector.NAME` flags and runs the enabled ones. A collector declares its metrics
(Desc), reads the host only through the host layer (amp_exporter.host) and the facts
shared in a scrape (SharedState), and says why it could not run with CollectorError.
This module imports no collector and no part of the scrape loop.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amp_exporter.exposition import Family, Lines
from amp_exporter.host.paths import HostPaths, NotRegularFile

if TYPE_CHECKING:
    from amp_exporter.host.ampcli import AmpcliResult
    from amp_exporter.host.linux import KernelFacts
    from amp_exporter.host.machinery import Machinery

log = logging.getLogger("amp_exporter")

# Bounded vocabulary for amp_exporter_collector_errors_total{reason}.
ERROR_REASONS = ("timeout", "exit_status", "parse", "permission", "missing", "internal")


@dataclass(frozen=True)
class Desc:
    """A metric's name, type, help and labels, declared once at module level (as
    node_exporter's prometheus.NewDesc). docs/metrics.md is generated from these."""

    name: str  # counters without _total: the exposition appends it
    kind: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...] = ()
    owner: str = ""  # the collector that exports it ("" = the exporter itself)
    # Its header and row texts, kept across scrapes (exposition.Lines).
    lines: Lines = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", Lines(self.name, self.kind, self.help, self.labels))

    def family(self) -> Family:
        return Family(self.name, self.kind, self.help, self.lines)

    def single(self, value: float, *label_values: str) -> Family:
        family = self.family()
        family.add_metric(label_values, float(value))
        return family

    @property
    def exposed_name(self) -> str:
        return self.name + "_total" if self.kind == "counter" else self.name


DESCS: list[Desc] = []


def gauge(owner: str, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Desc:
    desc = Desc(name, "gauge", help_text, labels, owner)
    DESCS.append(desc)
    return desc


def counter(owner: str, name: str, help_text: str, labels: tuple[str, ...] = ()) -> Desc:
    desc = Desc(name, "counter", help_text, labels, owner)
    DESCS.append(desc)
    return desc


class CollectorError(Exception):
    """A collector could not do its job; `reason` is one of ERROR_REASONS."""

    def __init__(self, reason: str, message: str, partial: Iterable[Family] = ()) -> None:
        if reason not in ERROR_REASONS:
            reason = "internal"
        super().__init__(message)
        self.reason = reason
        # Series the collector could still vouch for (e.g. ampcli's own health).
        self.partial = list(partial)


@dataclass
class Settings:
    """Everything collectors are configured with (built from the command line)."""

    paths: HostPaths
    ampcli_path: str  # in the exporter's own file system (ROOTFS/opt/cisco/amp/bin/ampcli)
    ampcli_timeout: float = 5.0
    ampcli_cache_seconds: float = 5.0
    ampcli_chroot: str = "auto"  # auto | always | never: run ampcli chrooted into ROOTFS
    scan_restart_threshold: int = 3
    scan_restart_window_seconds: float = 600.0
    min_available_memory_bytes: int = 1 << 30
    supported_kernels: tuple[str, ...] = ()
    definitions_glob: tuple[str, ...] = ()
    events_source: str = "auto"  # auto | ebpf | procfs
    events_python: str = ""  # the Python that runs the eBPF loader (must see bcc)
    events_load_timeout: float = 60.0
    events_window_seconds: float = 15.0
    events_capacity_per_second: float = 100_000.0
    events_pressure_threshold: float = 1.0
    events_pressure_for_seconds: float = 120.0
    # check and textfile: one collection, so no rate can be measured (no eBPF, no pressure)
    one_shot: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Collector:
    """Base class: subclasses implement `collect()` and return their metric families.

    `collect()` is called from many scrape threads at once. Anything kept between
    calls must be guarded, and a state change (a restart counted, a log offset
    moved) must happen once per real change, not once per scrape.
    """

    name = ""
    default_enabled = True
    help = ""

    def __init__(self, settings: Settings, shared: SharedState) -> None:
        self.settings = settings
        self.paths = settings.paths
        self.shared = shared

    def collect(self) -> Iterable[Family]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (background threads, file descriptors) at shutdown."""


_REGISTRY: dict[str, type[Collector]] = {}


def register(cls: type[Collector]) -> type[Collector]:
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"collector name missing or duplicated: {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Collector]]:
    """The collectors registered so far, by name (scrape.available imports them all)."""
    return dict(sorted(_REGISTRY.items()))


class SharedState:
    """Facts several collectors need, computed once and shared (process table, ampcli)."""

    def __init__(self, settings: Settings) -> None:
        from amp_exporter.host.ampcli import AmpcliRunner
        from amp_exporter.host.processes import ProcessTable

        self.settings = settings
        self.processes = ProcessTable(settings.paths)
        self.ampcli = AmpcliRunner(
            settings.ampcli_path, settings.ampcli_timeout, settings.ampcli_cache_seconds,
            rootfs=str(settings.paths.rootfs), chroot=settings.ampcli_chroot,
        )
        self.use_ampcli = True
        self._local = threading.local()

    def reported_faults(self) -> frozenset[int]:
        """Fault IDs the connector reports now (empty when ampcli did not answer, or when
        the connector collector is off: then ampcli is never run)."""
        if not self.use_ampcli:
            return frozenset()
        result = self.ampcli_status()
        return frozenset(result.status.faults) if result.status is not None else frozenset()

    def ampcli_status(self) -> AmpcliResult:
        """This scrape's ampcli answer, asked for once: every collector of a scrape sees the
        same one (and with --ampcli.cache 0 a scrape starts one ampcli, not one per use)."""
        found = getattr(self._local, "ampcli", None)
        if found is None:
            found = self._local.ampcli = self.ampcli.status()
        return found

    def begin_scrape(self) -> None:
        """Facts shared by the collectors of the scrape in this thread are looked at anew."""
        self.processes.begin_scrape()
        self._local.machinery = None
        self._local.kernel = None
        self._local.ampcli = None

    def kernel(self) -> KernelFacts:
        """This scrape's kernel facts (release, modules, Secure Boot, BTF), read once for the
        kernel collector and the machinery model; CollectorError when they cannot be."""
        from amp_exporter.host import linux

        found = getattr(self._local, "kernel", None)
        if found is None:
            try:
                found = linux.kernel_facts(self.settings.paths)
            except OSError as exc:
                raise host_error(exc, "reading kernel facts") from exc
            except ValueError as exc:
                raise CollectorError("parse", str(exc)) from exc
            self._local.kernel = found
        return found

    def machinery(self) -> Machinery:
        """How the connector monitors each subsystem (machinery.py), once per scrape; raises
        CollectorError saying why it cannot be told (permission, missing, parse)."""
        from amp_exporter.host import connector_files, machinery

        found = getattr(self._local, "machinery", None)
        if found is None:
            kernel = self.kernel()
            try:
                found = machinery.decide(machinery.gather(
                    kernel, connector_files.connector_version(self.settings.paths),
                    self.processes.snapshot(), self.reported_faults()))
            except OSError as exc:
                raise host_error(exc, "telling how the connector monitors") from exc
            except ValueError as exc:
                raise CollectorError("parse", f"cannot tell how the connector monitors: {exc}"
                                     ) from exc
            self._local.machinery = found
        return found

    def close(self) -> None:
        self.ampcli.close()


def host_error(exc: OSError, what: str) -> CollectorError:
    """A CollectorError for a host file that could not be read."""
    if isinstance(exc, PermissionError):
        return CollectorError("permission", f"{what}: permission denied ({exc.filename})")
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOTDIR:
        return CollectorError("missing", f"{what}: not found ({exc.filename})")
    # Something is there, but not a file that can be read as the one it names.
    if isinstance(exc, NotRegularFile):
        return CollectorError("parse", f"{what}: not a regular file ({exc.filename})")
    if exc.errno == errno.ELOOP:
        return CollectorError("parse", f"{what}: a symlink loop ({exc.filename})")
    return CollectorError("internal", f"{what}: {exc}")
