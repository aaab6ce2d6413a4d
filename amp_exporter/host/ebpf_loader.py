"""Short-lived child that compiles, loads and attaches the event counter with bcc, then
hands the file descriptors to the exporter and leaves.

Importing bcc costs ~65 MiB and compiling ~120 MiB: the serving process must not carry
that. This child does the work, sends the map and perf-event fds over a Unix socket
(SCM_RIGHTS), and exits with os._exit so bcc's own clean-up never runs: it would disable
and close the perf events that now belong to the exporter. The kernel keeps programs
attached for as long as the exporter holds the perf-event fds.

Protocol: one message on the socket (fd from argv[1]): a JSON header, with the fds as
ancillary data in the order the header lists them. argv[2] is the exporter's PID: the
loader dies with it.

It runs under whatever Python has the host's bcc, so this module and ebpf_program (and
the package __init__ files) stay Python 3.6 (RHEL 8's platform-python): no PEP 563, no
PEP 585/604 at run time (annotations are strings), no walrus, no socket.send_fds. It
attaches the programs itself with perf_event_open(2) on the tracefs it found: bcc before
0.26 looks for tracefs only under /sys/kernel/debug, which many hosts and containers lack.
"""

import array
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import platform
import signal
import socket
import sys

from amp_exporter.host import ebpf_program

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# __NR_bpf per machine (the kernel's syscall tables); elsewhere the probe is skipped.
SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "ppc64": 361, "s390x": 351,
           "i686": 357, "i386": 357, "armv7l": 386}
# __NR_perf_event_open, likewise.
SYS_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "ppc64le": 319, "ppc64": 319,
                       "s390x": 331, "i686": 336, "i386": 336, "armv7l": 364}
BPF_MAP_CREATE, BPF_MAP_TYPE_ARRAY = 0, 2
PERF_TYPE_TRACEPOINT, PERF_SAMPLE_RAW, PERF_FLAG_FD_CLOEXEC = 2, 1 << 10, 8
CAP_BPF = 39
SECCOMP_ADVICE = ("a seccomp filter refuses it although this process holds CAP_BPF: in a "
                  "container, allow bpf and perf_event_open to CAP_BPF and CAP_PERFMON in "
                  "its seccomp profile (deploy/container/seccomp-ebpf.py writes one)")


def _tracefs() -> "str | None":
    """The mounted tracefs; raises LoaderError("permission") when it is there but closed to
    us (it is mode 0700: CAP_DAC_READ_SEARCH reads it without root)."""
    for path in TRACEFS_DIRS:
        try:
            os.stat(os.path.join(path, "events", "sched"))
            return path
        except PermissionError as exc:
            raise LoaderError("permission", f"cannot read {path}: {exc}") from exc
        except OSError:
            continue
    return None


def _available_tracepoints(tracefs: str) -> "set[str]":
    found = set()
    for tracepoints in ebpf_program.FAMILIES.values():
        for tp in tracepoints:
            category, event = tp.split(":")
            if os.path.isdir(os.path.join(tracefs, "events", category, event)):
                found.add(tp)
    return found


def _status_fields() -> "dict[str, str]":
    try:
        with open("/proc/self/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return {}


def _seccomp_blocks_bpf() -> bool:
    """True when a seccomp filter is on this process although it holds CAP_BPF: the one
    case where an EPERM from bpf() is the filter's, not missing privilege (container
    engines' default profiles gate bpf() by CAP_SYS_ADMIN only)."""
    status = _status_fields()
    try:
        filtered = status.get("Seccomp", "0").strip() == "2"
        return filtered and bool(int(status.get("CapEff", "0"), 16) >> CAP_BPF & 1)
    except ValueError:
        return False


def _probe_bpf_syscall() -> None:
    """Create (and close) a one-slot array map: a refused bpf() is then reported as
    `permission`, saying whether privilege or a seccomp filter refused it, instead of
    bcc's "Failed to compile BPF module" after a successful compile."""
    number = SYS_BPF.get(os.uname().machine)
    if number is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 12)(BPF_MAP_TYPE_ARRAY, 4, 4, 1)  # type, key, value, entries
    fd = libc.syscall(number, BPF_MAP_CREATE, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd >= 0:
        os.close(fd)
        return
    err, filtered = ctypes.get_errno(), _seccomp_blocks_bpf()
    # A filter may answer ENOSYS (Podman's default errno); a kernel without bpf() does too,
    # and that one is left to bcc to report.
    if err in (errno.EPERM, errno.EACCES) or (err == errno.ENOSYS and filtered):
        why = SECCOMP_ADVICE if filtered else (
            "needs CAP_BPF and CAP_PERFMON (kernel 5.8+) or CAP_SYS_ADMIN")
        raise LoaderError("permission", f"the kernel refuses bpf() ({os.strerror(err)}): {why}")


def load() -> "tuple[dict, list[int]]":
    """Compile and attach; returns (header, fds). Raises LoaderError with a bounded reason."""
    tracefs = _tracefs()
    if tracefs is None:
        raise LoaderError("no_tracefs", "tracefs is not mounted at /sys/kernel/tracing")
    release = os.uname().release
    if not os.path.exists(f"/lib/modules/{release}/build"):
        raise LoaderError("no_headers", f"no kernel headers at /lib/modules/{release}/build")
    try:
        from bcc import BPF
    except ImportError as exc:
        raise LoaderError("no_bcc", f"cannot import bcc ({exc}); install python3-bpfcc and "
                          "use a Python that sees it") from exc
    text, attached = ebpf_program.source(_available_tracepoints(tracefs))
    if not attached:
        raise LoaderError("no_tracepoints", "none of the event tracepoints exist")
    _probe_bpf_syscall()
    try:
        bpf = BPF(text=text)
        programs = [(tp, bpf.load_func(ebpf_program.function_name(tp), BPF.TRACEPOINT).fd)
                    for tp in attached]
    except PermissionError as exc:
        raise LoaderError("permission", str(exc)) from exc
    except Exception as exc:  # bcc raises Exception for compile and load errors alike
        message = str(exc)
        denied = ("Operation not permitted", "Permission denied", "EPERM", "EACCES")
        reason = "permission" if any(word in message for word in denied) else "compile_failed"
        raise LoaderError(reason, message[:500]) from exc
    # Each perf event fd holds its attached program, so the perf fds and the two map fds are
    # all the exporter needs: the programs stay loaded exactly as long as it keeps these.
    perf_fds = []
    try:
        for tp, prog_fd in programs:
            perf_fds.append(_attach(tracefs, tp, prog_fd))
    except BaseException:
        for fd in perf_fds:
            os.close(fd)
        raise
    header = {"ok": True, "tracepoints": attached, "maps": ["counts", "by_comm"],
              "python": platform.python_version(), "bcc": _bcc_version()}
    fds = [bpf["counts"].map_fd, bpf["by_comm"].map_fd, *perf_fds]
    return header, fds


def _bcc_version() -> str:
    try:
        import bcc  # imported by load() already
        return str(bcc.__version__)
    except (ImportError, AttributeError):  # bcc before 0.6.1 has no __version__
        return "unknown"


class _PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr as of PERF_ATTR_SIZE_VER0 (64 bytes, every kernel takes it)."""
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32),
                ("config", ctypes.c_uint64), ("sample_period", ctypes.c_uint64),
                ("sample_type", ctypes.c_uint64), ("read_format", ctypes.c_uint64),
                ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("bp_type", ctypes.c_uint32), ("config1", ctypes.c_uint64)]


def _perf_ioctl(nr: int, writes_u32: bool) -> int:
    """PERF_EVENT_IOC_* (linux/perf_event.h: _IO('$', nr) or _IOW('$', nr, __u32)), in
    the machine's ioctl encoding (powerpc's differs from the generic one)."""
    if os.uname().machine.startswith("ppc"):
        none, write, dir_shift = 1, 4, 29
    else:
        none, write, dir_shift = 0, 1, 30
    direction, size = (write, 4) if writes_u32 else (none, 0)
    return direction << dir_shift | size << 16 | ord("$") << 8 | nr


def _attach(tracefs: str, tracepoint: str, prog_fd: int) -> int:
    """Attach a loaded tracepoint program as bcc does: one perf event on CPU 0 for all
    processes (the program runs on every CPU), the program set on it, enabled. Returns the
    perf event fd, which keeps the program attached and loaded."""
    category, event = tracepoint.split(":")
    try:
        with open(os.path.join(tracefs, "events", category, event, "id")) as f:
            tp_id = int(f.read())
    except (OSError, ValueError) as exc:
        raise LoaderError("loader_failed", f"cannot read the id of {tracepoint}: {exc}") from exc
    number = SYS_PERF_EVENT_OPEN.get(os.uname().machine)
    if number is None:
        raise LoaderError("loader_failed", f"perf_event_open unknown on {os.uname().machine}")
    attr = _PerfEventAttr(type=PERF_TYPE_TRACEPOINT, size=ctypes.sizeof(_PerfEventAttr),
                          config=tp_id, sample_period=1, sample_type=PERF_SAMPLE_RAW,
                          wakeup_events=1)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(ctypes.c_long(number), ctypes.byref(attr), ctypes.c_long(-1),
                      ctypes.c_long(0), ctypes.c_long(-1), ctypes.c_long(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        raise _attach_error(tracepoint, "perf_event_open", ctypes.get_errno())
    try:
        fcntl.ioctl(fd, _perf_ioctl(8, True), prog_fd)  # PERF_EVENT_IOC_SET_BPF
        fcntl.ioctl(fd, _perf_ioctl(0, False), 0)  # PERF_EVENT_IOC_ENABLE
    except OSError as exc:
        os.close(fd)
        raise _attach_error(tracepoint, "ioctl", exc.errno or 0) from exc
    return fd


def _attach_error(tracepoint: str, call: str, err: int) -> "LoaderError":
    message = f"cannot attach to {tracepoint}: {call}: {os.strerror(err)}"
    if err in (errno.EPERM, errno.EACCES):
        # bpf() passed the probe: under a seccomp filter, it is perf_event_open it refuses.
        why = SECCOMP_ADVICE if _seccomp_blocks_bpf() else (
            "needs CAP_PERFMON (kernel 5.8+) or CAP_SYS_ADMIN")
        return LoaderError("permission", f"{message}: {why}")
    return LoaderError("loader_failed", message)


class LoaderError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _die_with_parent(exporter_pid: int) -> None:
    """Ask the kernel to kill us if the exporter dies first (SIGKILL, OOM): we would
    otherwise finish, attach, and leave our programs to bcc's clean-up seconds later."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != exporter_pid:  # it died before prctl took effect
        os._exit(1)


def send(sock: socket.socket, header: dict, fds: "list[int]") -> None:
    """The one message: HEADER as JSON, FDS as one SCM_RIGHTS array of ints, exactly what
    socket.send_fds (3.9+) sends; the exporter receives it with socket.recv_fds."""
    sock.sendmsg([json.dumps(header).encode()],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def main() -> None:
    _die_with_parent(int(sys.argv[2]))
    # family and type given: Python 3.6 does not detect them from the fd (3.7 does)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=int(sys.argv[1]))
    try:
        header, fds = load()
    except LoaderError as exc:
        header, fds = {"ok": False, "reason": exc.reason, "message": str(exc)}, []
    except Exception as exc:  # never die silently: the exporter waits for an answer
        header, fds = {"ok": False, "reason": "loader_failed", "message": repr(exc)[:500]}, []
    send(sock, header, fds)
    sock.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip bcc's atexit clean-up: the exporter owns the programs now


if __name__ == "__main__":
    main()
