"""Every collector module registers itself on import; this list is the whole set."""

from amp_exporter.collectors import (  # noqa: F401
    bpf,
    connector,
    events,
    kernel,
    logs,
    network,
    processes,
    scan_service,
    scan_user,
    selinux,
)
