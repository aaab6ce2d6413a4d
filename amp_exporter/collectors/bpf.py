"""BPF programs and maps held by each connector process (its fds, fdinfo for the type)."""

from __future__ import annotations

import logging

from amp_exporter.host import bpfsys
from amp_exporter.registry import Collector, CollectorError, Desc, gauge, register

# enum bpf_prog_type (include/uapi/linux/bpf.h): bounded label values.
log = logging.getLogger("amp_exporter.bpf")

PROG_TYPES = {
    "0": "unspec", "1": "socket_filter", "2": "kprobe", "3": "sched_cls", "4": "sched_act",
    "5": "tracepoint", "6": "xdp", "7": "perf_event", "8": "cgroup_skb", "9": "cgroup_sock",
    "10": "lwt_in", "11": "lwt_out", "12": "lwt_xmit", "13": "sock_ops", "14": "sk_skb",
    "15": "cgroup_device", "16": "sk_msg", "17": "raw_tracepoint", "18": "cgroup_sock_addr",
    "19": "lwt_seg6local", "20": "lirc_mode2", "21": "sk_reuseport", "22": "flow_dissector",
    "23": "cgroup_sysctl", "24": "raw_tracepoint_writable", "25": "cgroup_sockopt",
    "26": "tracing", "27": "struct_ops", "28": "ext", "29": "lsm", "30": "sk_lookup",
    "31": "syscall", "32": "netfilter",
}


NAME = "bpf"
PROGRAMS = gauge(NAME, "cisco_amp_bpf_programs",
                 "BPF programs held by the connector process (its fds).", ("process",))
MAPS = gauge(NAME, "cisco_amp_bpf_maps", "BPF maps held by the connector process (its fds).",
             ("process",))
BY_TYPE = gauge(NAME, "cisco_amp_bpf_programs_by_type",
                "BPF programs held by the connector process, by program type (fdinfo "
                "prog_type).", ("process", "type"))
HOST_PROGRAMS = gauge(NAME, "cisco_amp_host_bpf_programs",
                      "BPF programs loaded on the whole host (bpf() syscall; live host only, "
                      "needs CAP_SYS_ADMIN or CAP_BPF).")
HOST_MAPS = gauge(NAME, "cisco_amp_host_bpf_maps",
                  "BPF maps on the whole host (bpf() syscall; live host only).")


def _host_total(desc: Desc, count) -> list:
    try:
        return [desc.single(count())]
    except OSError as exc:  # EPERM without CAP_SYS_ADMIN/CAP_BPF: a cross-check we skip
        log.debug("bpf() not available", extra={"err": str(exc)})
        return []


@register
class BPFCollector(Collector):
    name = NAME
    help = "BPF programs and maps held by each connector process (proc/PID/fd, fdinfo)."

    def host_totals(self) -> list:
        """Everything loaded on the host (bpf() syscall), where we run on that kernel."""
        if not self.paths.procfs_is_live:
            return []
        return [*_host_total(HOST_PROGRAMS, bpfsys.host_programs),
                *_host_total(HOST_MAPS, bpfsys.host_maps)]

    def collect(self):
        snap = self.shared.processes.snapshot()
        programs, maps, by_type = PROGRAMS.family(), MAPS.family(), BY_TYPE.family()
        totals: dict[str, list[int]] = {}
        types: dict[tuple[str, str], int] = {}
        unreadable = []
        for proc in snap.processes:
            if not proc.fds_readable:
                unreadable.append(proc.name)
                continue
            total = totals.setdefault(proc.name, [0, 0])
            total[0] += proc.bpf_programs
            total[1] += proc.bpf_maps
            for number, count in proc.bpf_program_types.items():
                key = (proc.name, PROG_TYPES.get(number, "other"))
                types[key] = types.get(key, 0) + count
        for name, (progs, nmaps) in sorted(totals.items()):
            programs.add_metric([name], float(progs))
            maps.add_metric([name], float(nmaps))
        for (name, kind), count in sorted(types.items()):
            by_type.add_metric([name, kind], float(count))
        families = [programs, maps, by_type, *self.host_totals()]
        if unreadable:
            raise CollectorError(
                "permission", "cannot list the fds of " + ", ".join(sorted(set(unreadable)))
                + " (needs CAP_SYS_PTRACE or the same user)", partial=families)
        return families
