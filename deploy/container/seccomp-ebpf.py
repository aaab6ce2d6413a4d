#!/usr/bin/env python3
"""Print a container engine's default seccomp profile, changed only so that a container
holding CAP_BPF may call bpf() and one holding CAP_PERFMON may call perf_event_open().

Why: amp-exporter's eBPF event source needs both calls (load the counter, attach it to
tracepoints). Kernels since 5.8 let CAP_BPF + CAP_PERFMON do that without CAP_SYS_ADMIN,
but older default profiles (Podman's containers-common, e.g. Debian 12's podman 4.3)
still allow the two calls only to CAP_SYS_ADMIN. Docker 23.0+ and containerd 1.7+ already
gate them by CAP_BPF and CAP_PERFMON and need no change. Every other rule of the profile
is kept as it is, so the container gets nothing else.

    python3 seccomp-ebpf.py [DEFAULT_PROFILE] > /etc/amp-exporter/seccomp.json

DEFAULT_PROFILE defaults to Podman's /usr/share/containers/seccomp.json. Stdlib only, and
Python 3.6+ (it runs on the hosts it is written for).
"""

import json
import sys

PODMAN_DEFAULT = "/usr/share/containers/seccomp.json"
GATES = {"bpf": "CAP_BPF", "perf_event_open": "CAP_PERFMON"}


def _denies(rule):
    return not rule.get("action", "").endswith("ALLOW")


def allow_ebpf(profile):
    """PROFILE (a parsed OCI/Docker seccomp profile) with the two calls gated by their own
    capability: they leave every rule that denies them (rules that allow them, e.g. to
    CAP_SYS_ADMIN, stay), and one rule per call allows it to its capability."""
    if not isinstance(profile.get("syscalls"), list):
        raise ValueError("not a seccomp profile: no 'syscalls' list")
    kept = []
    for rule in profile["syscalls"]:
        names = rule.get("names") or ([rule["name"]] if "name" in rule else [])
        if _denies(rule) and not rule.get("args") and set(names) & set(GATES):
            rest = [n for n in names if n not in GATES]
            if not rest:
                continue
            rule = dict(rule, names=rest)
            rule.pop("name", None)
        kept.append(rule)
    for call, cap in GATES.items():
        kept.append({"names": [call], "action": "SCMP_ACT_ALLOW", "args": [],
                     "comment": f"amp-exporter: {call} with {cap} (kernel 5.8+)",
                     "includes": {"caps": [cap]}, "excludes": {}})
    return dict(profile, syscalls=kept)


def main(argv):
    path = argv[1] if len(argv) > 1 else PODMAN_DEFAULT
    if len(argv) > 2 or path in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 2
    try:
        with open(path) as f:
            profile = json.load(f)
        changed = allow_ebpf(profile)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"seccomp-ebpf: {path}: {exc}\n")
        return 1
    json.dump(changed, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
