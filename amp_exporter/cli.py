"""Command line: `amp-exporter [serve|check|textfile] [flags]` (see docs and contract)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import tempfile
from typing import Optional

from amp_exporter import __version__, logsetup
from amp_exporter.host.ampcli import CHROOT_MODES, HOST_AMPCLI, chroot_plan
from amp_exporter.host.paths import HostPaths
from amp_exporter.registry import Settings
from amp_exporter.scrape import Exporter, available, resolve_enabled

DEFAULT_PORT = 9872
COMMANDS = ("serve", "check", "textfile")
log = logging.getLogger("amp_exporter")


def _size(text: str) -> int:
    """'256MiB', '1G', '1048576' -> bytes; ValueError (argparse: exit 2) for anything else."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    digits = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = 1
    if digits and digits[-1] in units:
        digits, scale = digits[:-1], units[digits[-1]]
    number = float(digits)
    if not math.isfinite(number) or number < 0 or number * scale > 1 << 62:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r}")
    return int(number * scale)


def _number(kind, allow_zero: bool = False):
    """A flag's number: finite (no nan, no inf) and positive, or also 0 where allowed."""
    def parse(text: str):
        value = kind(text)
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>= 0' if allow_zero else '> 0'}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value"
    return parse


def common_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("host")
    g.add_argument("--path.rootfs", dest="rootfs", default="/", metavar="DIR",
                   help="read every host file under DIR (default /)")
    g.add_argument("--path.procfs", dest="procfs", metavar="DIR",
                   help="proc filesystem (default ROOTFS/proc)")
    g.add_argument("--path.sysfs", dest="sysfs", metavar="DIR",
                   help="sys filesystem (default ROOTFS/sys)")
    g = p.add_argument_group("ampcli")
    g.add_argument("--ampcli.path", dest="ampcli_path", metavar="PATH",
                   help="the connector's CLI (default ROOTFS/opt/cisco/amp/bin/ampcli)")
    g.add_argument("--ampcli.chroot", dest="ampcli_chroot", choices=CHROOT_MODES,
                   default="auto",
                   help="run ampcli in the host root, chrooted into ROOTFS (needs "
                        "CAP_SYS_CHROOT): auto when --path.rootfs is not / and ampcli lies "
                        "under it (unless that root lacks the interpreter or loader ampcli "
                        "needs, as an example tree does), always, or never (default auto)")
    g.add_argument("--ampcli.timeout", dest="ampcli_timeout", type=_number(float), default=5.0,
                   metavar="SECONDS", help="kill ampcli after this long (default 5)")
    g.add_argument("--ampcli.cache", dest="ampcli_cache", type=_number(float, allow_zero=True),
                   default=5.0, metavar="SECONDS",
                   help="reuse an ampcli answer for this long across scrapes (default 5)")
    g = p.add_argument_group("checks")
    g.add_argument("--check.scan-restarts", dest="scan_restarts", type=_number(int),
                   default=3, metavar="N",
                   help="fault 6 cause: scan service restarts in the window (default 3)")
    g.add_argument("--check.scan-restart-window", dest="scan_window", type=_number(float),
                   default=600.0, metavar="SECONDS", help="window for restarts (default 600)")
    g.add_argument("--check.min-available-memory", dest="min_memory", type=_size,
                   default="256MiB", metavar="SIZE",
                   help="fault 7 cause: MemAvailable below this (default 256MiB)")
    g.add_argument("--check.supported-kernels", dest="supported_kernels", action="append",
                   default=[], metavar="GLOBS",
                   help="fault 16 cause: comma-separated kernel release globs the connector "
                        "supports, e.g. '5.14.0-*.el9*'; repeatable (default: no check)")
    g.add_argument("--check.definitions-glob", dest="definitions_glob", action="append",
                   default=[], metavar="GLOB",
                   help="definitions files to check, relative to the root; repeatable "
                        "(default opt/cisco/amp/clamav/*.cvd and similar)")
    g = p.add_argument_group("events (fault 18)")
    g.add_argument("--events.source", dest="events_source", choices=["auto", "ebpf", "procfs"],
                   default="auto", help="auto: eBPF where the host allows it, else procfs")
    g.add_argument("--events.python", dest="events_python", default="auto",
                   metavar="PATH", help="Python that runs the eBPF loader; must import bcc "
                   "(default auto: the first that does of this Python, "
                   "/usr/libexec/platform-python, /usr/bin/python3, /usr/bin/python3.N newest "
                   "first, /usr/local/bin/python3; searched in the background at start-up)")
    g.add_argument("--events.load-timeout", dest="events_load_timeout", type=_number(float),
                   default=60.0, metavar="SECONDS", help="give up loading eBPF after this long")
    g.add_argument("--events.window", dest="events_window", type=_number(float),
                   default=15.0, metavar="SECONDS",
                   help="window for event rates and top processes (default 15)")
    g.add_argument("--events.capacity", dest="events_capacity", type=_number(float),
                   default=100_000.0, metavar="PER_SECOND",
                   help="events per second the connector absorbs; pressure 1 = at capacity")
    g.add_argument("--events.pressure-threshold", dest="events_threshold",
                   type=_number(float), default=1.0, metavar="RATIO",
                   help="fault 18 cause: pressure at or above this ... (default 1.0)")
    g.add_argument("--events.pressure-for", dest="events_for",
                   type=_number(float, allow_zero=True), default=120.0,
                   metavar="SECONDS", help="... for this long (default 120)")
    g = p.add_argument_group("collectors")
    for name, cls in available().items():
        g.add_argument(f"--collector.{name}", dest=f"collector_{name}", default=None,
                       action=argparse.BooleanOptionalAction,
                       help=f"{cls.help} (default {'on' if cls.default_enabled else 'off'})")
    g.add_argument("--collector.disable-defaults", dest="disable_defaults", action="store_true",
                   help="start from no collector; only --collector.NAME ones run")
    g = p.add_argument_group("logging")
    g.add_argument("--log.level", dest="log_level", choices=list(logsetup.LEVELS),
                   default="info")
    g.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"],
                   default="logfmt")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = common_flags()
    parser = argparse.ArgumentParser(
        prog="amp-exporter",
        description="Prometheus exporter for the Cisco Secure Endpoint Linux connector.",
    )
    parser.add_argument("--version", action="version", version=f"amp-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{serve,check,textfile}")
    serve = sub.add_parser("serve", parents=[common], help="serve /metrics (default)")
    serve.add_argument("--web.listen-address", dest="listen", default=f":{DEFAULT_PORT}",
                       metavar="HOST:PORT", help=f"default :{DEFAULT_PORT}")
    serve.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics")
    serve.add_argument("--web.config.file", dest="web_config", metavar="FILE",
                       help="TLS and basic auth (exporter-toolkit format)")
    sub.add_parser("check", parents=[common],
                   help="diagnose this host; exit 0 healthy, 1 fault or cause found")
    textfile = sub.add_parser("textfile", parents=[common],
                              help="write one exposition atomically (for node_exporter)")
    textfile.add_argument("--output", required=True, metavar="PATH",
                          help="file to write, or - for stdout")
    return parser


def ampcli_path(args: argparse.Namespace) -> str:
    """--ampcli.path, or the host's ampcli under --path.rootfs."""
    return args.ampcli_path or HostPaths(args.rootfs).root(HOST_AMPCLI)


def settings_from(args: argparse.Namespace) -> Settings:
    paths = HostPaths(args.rootfs, args.procfs, args.sysfs)
    patterns = tuple(p.strip() for group in args.supported_kernels for p in group.split(",")
                     if p.strip())
    return Settings(
        paths=paths,
        ampcli_path=ampcli_path(args),
        ampcli_timeout=args.ampcli_timeout,
        ampcli_cache_seconds=args.ampcli_cache,
        ampcli_chroot=args.ampcli_chroot,
        scan_restart_threshold=args.scan_restarts,
        scan_restart_window_seconds=args.scan_window,
        min_available_memory_bytes=args.min_memory,
        supported_kernels=patterns,
        definitions_glob=tuple(args.definitions_glob),
        events_source=args.events_source,
        events_python=args.events_python,
        events_load_timeout=args.events_load_timeout,
        events_window_seconds=args.events_window,
        events_capacity_per_second=args.events_capacity,
        events_pressure_threshold=args.events_threshold,
        events_pressure_for_seconds=args.events_for,
    )


def make_exporter(args: argparse.Namespace) -> Exporter:
    choices = {name: getattr(args, f"collector_{name}") for name in available()}
    enabled = resolve_enabled(choices, args.disable_defaults)
    settings = settings_from(args)
    settings.one_shot = args.command != "serve"
    if settings.one_shot and settings.events_source == "auto":
        # One collection cannot see a rate: loading eBPF for it would cost a second for
        # nothing. Counts since boot from proc/stat are what a one-shot can give.
        settings.events_source = "procfs"
    return Exporter(settings, enabled)


def exposition(exporter: Exporter) -> bytes:
    """One textfile exposition: every collector, and when it was written."""
    import itertools
    import time

    from amp_exporter.exposition import render
    from amp_exporter.scrape import TEXTFILE_WRITTEN

    return render(itertools.chain(exporter.collect(), [TEXTFILE_WRITTEN.single(time.time())]))


TEMP_PREFIX, TEMP_SUFFIX = ".amp-exporter.", ".tmp"


def remove_stale_temporaries(directory: str) -> list[str]:
    """Temporary files left by a run that was killed mid-write (their names carry the
    writer's PID): removed once that PID is gone. node_exporter reads only *.prom, so a
    leftover is never read as metrics, but it should not pile up either."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
            continue
        pid = name[len(TEMP_PREFIX):].partition(".")[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def write_atomically(path: str, data: bytes) -> None:
    """Write to a temporary file beside PATH, then rename: readers never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    for name in remove_stale_temporaries(directory):
        log.info("removed a temporary file left by a killed run", extra={"file": name})
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}.", suffix=TEMP_SUFFIX,
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "serve")
    parser = build_parser()
    args = parser.parse_args(argv)
    logsetup.setup(args.log_level, args.log_format)
    if not os.path.isdir(args.rootfs):
        parser.error(f"--path.rootfs {args.rootfs}: not a directory")
    try:
        chroot_plan(ampcli_path(args), args.rootfs, args.ampcli_chroot)
    except ValueError as exc:  # --ampcli.chroot=always with an ampcli outside the root
        parser.error(str(exc))

    if args.command == "serve":
        from amp_exporter import web

        return web.serve(args, make_exporter(args), parser)
    exporter = make_exporter(args)
    try:
        if args.command == "check":
            from amp_exporter import check

            return check.run(exporter, sys.stdout)
        data = exposition(exporter)
        if args.output == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            try:
                write_atomically(args.output, data)
            except OSError as exc:
                log.error("cannot write textfile", extra={"path": args.output, "err": str(exc)})
                return 1
        return 0
    finally:
        exporter.close()
