"""Command line: `amp-exporter [serve|check|textfile] [flags]` (see docs and contract).

It behaves as node_exporter's does: `amp-exporter --help` lists serve's flags (serve is
the default command), every flag shows its default, `--version` works after any command,
and a mistake gets one line on stderr, naming the flag and what it accepts, exit 2."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import tempfile
from typing import NoReturn, Optional

from amp_exporter import __version__, logsetup
from amp_exporter.host.ampcli import CHROOT_MODES, HOST_AMPCLI, chroot_plan
from amp_exporter.host.paths import HostPaths
from amp_exporter.registry import Settings
from amp_exporter.scrape import Exporter, available, resolve_enabled

DEFAULT_PORT = 9872
COMMANDS = ("serve", "check", "textfile")
PROG = "amp-exporter"
# Paths the web server answers itself: --web.telemetry-path may not take them.
RESERVED_PATHS = ("/", "/-/healthy", "/-/ready")
# Flags that exist for one command only: an unknown flag that is one of them says where.
ONLY_IN = {"--web.listen-address": "serve", "--web.telemetry-path": "serve",
           "--web.config.file": "serve", "--output": "textfile"}
# Written at build time (scripts/build-dist, a package build) beside this file; git is
# never run at run time (a host may have none, and the tree is no checkout).
REVISION_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "REVISION")
log = logging.getLogger("amp_exporter")

SIZE_FORM = ("a size like 512MiB, 1GiB or 1073741824 (units B, K, KB, KiB, M, MB, MiB, G, "
             "GB, GiB, any case; K = 1024)")


def _size(text: str) -> int:
    """'256MiB', '1G', '1048576' -> bytes; ArgumentTypeError (exit 2) for anything else."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    digits = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = 1
    if digits and digits[-1] in units:
        digits, scale = digits[:-1], units[digits[-1]]
    try:
        number = float(digits)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0 or number * scale > 1 << 62:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {SIZE_FORM}")
    return int(number * scale)


def _number(kind, what: str = "a number", allow_zero: bool = False):
    """A flag's number: finite (no nan, no inf) and positive, or also 0 where allowed.
    WHAT names it in the error: 'a number of seconds' -> 'expected a number of seconds > 0'."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: expected {what} {'>= 0' if allow_zero else '> 0'}")
        return value
    parse.__name__ = kind.__name__
    return parse


SECONDS = "a number of seconds"


def _telemetry_path(text: str) -> str:
    """--web.telemetry-path: an absolute URL path that is none of the server's own pages."""
    if not text.startswith("/") or any(c in text for c in "?# \t\r\n"):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a URL path starting with /, e.g. /metrics")
    if text in RESERVED_PATHS:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a path other than {', '.join(RESERVED_PATHS)} "
            "(the exporter's own pages), e.g. /metrics")
    return text


def revision() -> str:
    """The git revision the build was made from, as written at build time, or 'unknown'."""
    try:
        with open(REVISION_FILE, encoding="ascii") as f:
            text = f.read(64).strip().split()[0]
    except (OSError, ValueError, IndexError):
        return "unknown"
    return text if text.isalnum() else "unknown"


def version_text() -> str:
    """As node_exporter's --version: name, version and revision, then how it runs."""
    return (f"{PROG}, version {__version__} (revision: {revision()})\n"
            f"  python version: {sys.version.split()[0]} ({sys.executable})\n"
            f"  platform: {sys.platform}/{os.uname().machine}\n")


class _Version(argparse.Action):
    """--version: argparse's own re-wraps the text into one paragraph."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the version, the Python it runs on and the platform, and exit"):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(version_text())
        sys.stdout.flush()
        parser.exit(0)


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Every flag's help ends with its default, as node_exporter's does."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=34)

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or text is argparse.SUPPRESS or "(default" in text
                or action.required or isinstance(action, (argparse._HelpAction, _Version))):
            return text
        return f"{text} (default {_shown(action.default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """One line on stderr for any mistake (no usage dump), and a hint for unknown flags."""

    commands: dict

    def fail(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message}\n(see {self.prog} --help)\n")

    def error(self, message: str) -> NoReturn:
        import re

        found = re.match(r"argument (\S+): (.*)", message, re.S)
        if found:
            name, rest = found[1].split("/")[0], found[2]
            choice = re.match(r"invalid choice: (.*) \(choose from (.*)\)$", rest, re.S)
            if choice:
                rest = (f"invalid value {choice[1]}: expected one of "
                        f"{choice[2].replace(chr(39), '')}")
            elif rest == "expected one argument":
                rest = "expected a value"
            elif rest.startswith("ignored explicit argument "):
                rest = f"takes no value, got {rest.rpartition(' ')[2]}"
            message = f"{name}: {rest}"
        self.fail(" ".join(message.split()))

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.unknown(extras[0], namespace)
        return namespace

    def unknown(self, word: str, namespace=None) -> NoReturn:
        """An argument no flag took: name the nearest flag (or command)."""
        import difflib

        parser = self
        command = getattr(namespace, "command", None)
        if getattr(self, "commands", None) and command in self.commands:
            parser = self.commands[command]  # parsed through the top-level parser
        if not word.startswith("-") or word == "-":
            hint = ""
            if word in COMMANDS:
                hint = f": the command comes first, as in '{PROG} {word} [flags]'"
            else:
                near = difflib.get_close_matches(word, COMMANDS, n=1)
                if near:
                    hint = f", did you mean the command '{near[0]}' (it comes first)?"
            parser.fail(f"unexpected argument {word!r}{hint}")
        flag = word.split("=", 1)[0]
        if flag in ONLY_IN:
            parser.fail(f"unknown flag {flag!r} for {parser.prog}: it is a flag of "
                        f"'{PROG} {ONLY_IN[flag]}'")
        near = difflib.get_close_matches(flag, list(parser._option_string_actions), n=1)
        parser.fail(f"unknown flag {flag!r}" + (f", did you mean {near[0]!r}?" if near else ""))


def unknown_command(word: str) -> NoReturn:
    import difflib

    near = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f", did you mean {near[0]!r}?" if near else f" (commands: {', '.join(COMMANDS)})"
    sys.stderr.write(f"{PROG}: error: unknown command {word!r}{hint}\n(see {PROG} --help)\n")
    raise SystemExit(2)


def common_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("host")
    g.add_argument("--path.rootfs", dest="rootfs", default="/", metavar="DIR",
                   help="read every host file (etc, opt, var/log, lib/modules, ...) under DIR")
    g.add_argument("--path.procfs", dest="procfs", metavar="DIR",
                   help="proc filesystem (default ROOTFS/proc)")
    g.add_argument("--path.sysfs", dest="sysfs", metavar="DIR",
                   help="sys filesystem (default ROOTFS/sys)")
    g = p.add_argument_group("ampcli")
    g.add_argument("--ampcli.path", dest="ampcli_path", metavar="PATH",
                   help="the connector's CLI, run as 'ampcli status' "
                        "(default ROOTFS/opt/cisco/amp/bin/ampcli)")
    g.add_argument("--ampcli.chroot", dest="ampcli_chroot", choices=CHROOT_MODES,
                   default="auto",
                   help="run ampcli in the host root, chrooted into ROOTFS (needs "
                        "CAP_SYS_CHROOT): auto when --path.rootfs is not / and ampcli lies "
                        "under it (unless that root lacks the interpreter or loader ampcli "
                        "needs, as an example tree does), always, or never (default auto)")
    g.add_argument("--ampcli.timeout", dest="ampcli_timeout", type=_number(float, SECONDS),
                   default=5.0, metavar="SECONDS",
                   help="kill ampcli after this long; the scrape still answers")
    g.add_argument("--ampcli.cache", dest="ampcli_cache",
                   type=_number(float, SECONDS, allow_zero=True), default=5.0, metavar="SECONDS",
                   help="reuse an ampcli answer for this long across scrapes; 0: never")
    g = p.add_argument_group("checks")
    g.add_argument("--check.scan-restarts", dest="scan_restarts",
                   type=_number(int, "a whole number"), default=3, metavar="N",
                   help="fault 6 cause: this many scan service restarts in the window")
    g.add_argument("--check.scan-restart-window", dest="scan_window",
                   type=_number(float, SECONDS), default=600.0, metavar="SECONDS",
                   help="window for --check.scan-restarts")
    g.add_argument("--check.min-available-memory", dest="min_memory", type=_size,
                   default="256MiB", metavar="SIZE",
                   help="fault 7 cause: MemAvailable below this; SIZE as 512MiB, 1GiB or "
                        "a number of bytes")
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
                   default="auto", help="where event counts come from: auto (eBPF where the "
                   "host allows it, else procfs), ebpf or procfs")
    g.add_argument("--events.python", dest="events_python", default="auto",
                   metavar="PATH", help="Python that runs the eBPF loader; must import bcc "
                   "(default auto: the first that does of this Python, "
                   "/usr/libexec/platform-python, /usr/bin/python3, /usr/bin/python3.N newest "
                   "first, /usr/local/bin/python3; searched in the background at start-up)")
    g.add_argument("--events.load-timeout", dest="events_load_timeout",
                   type=_number(float, SECONDS), default=60.0, metavar="SECONDS",
                   help="give up loading eBPF after this long, then count from procfs")
    g.add_argument("--events.window", dest="events_window", type=_number(float, SECONDS),
                   default=15.0, metavar="SECONDS",
                   help="window for event rates and top processes")
    g.add_argument("--events.capacity", dest="events_capacity",
                   type=_number(float, "a number of events per second"), default=100_000.0,
                   metavar="PER_SECOND",
                   help="events per second the connector absorbs; pressure 1 = at capacity")
    g.add_argument("--events.pressure-threshold", dest="events_threshold",
                   type=_number(float), default=1.0, metavar="RATIO",
                   help="fault 18 cause: pressure at or above this ...")
    g.add_argument("--events.pressure-for", dest="events_for",
                   type=_number(float, SECONDS, allow_zero=True), default=120.0,
                   metavar="SECONDS", help="... for this long")
    g = p.add_argument_group("collectors")
    for name, cls in available().items():
        g.add_argument(f"--collector.{name}", dest=f"collector_{name}", default=None,
                       action=argparse.BooleanOptionalAction,
                       help=f"{cls.help} (default {'on' if cls.default_enabled else 'off'})")
    g.add_argument("--collector.disable-defaults", dest="disable_defaults", action="store_true",
                   help="start from no collector; only --collector.NAME ones run")
    g = p.add_argument_group("logging")
    g.add_argument("--log.level", dest="log_level", choices=list(logsetup.LEVELS),
                   default="info", help="only log messages of this level or above")
    g.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"],
                   default="logfmt", help="output format of log messages")
    return p


SERVE_USAGE = f"""{PROG} [serve] [flags]                  serve /metrics (the default command)
       {PROG} check [flags]                    diagnose this host
       {PROG} textfile --output PATH [flags]   write one exposition"""
DESCRIPTION = "Prometheus exporter for the Cisco Secure Endpoint Linux connector."
EPILOG = (f"These are serve's flags. '{PROG} check --help' and '{PROG} textfile --help'\n"
          "list those of check and textfile (the same, without the web ones).")


def build_parser() -> Parser:
    """The top-level parser, with serve, check and textfile as subparsers; main() parses
    with the command's own parser (build_parser().commands[NAME])."""
    common = common_flags()
    parser = Parser(prog=PROG, description=DESCRIPTION, usage=SERVE_USAGE, epilog=EPILOG,
                    formatter_class=_Formatter)
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="{serve,check,textfile}")
    serve = sub.add_parser("serve", parents=[common], help="serve /metrics (default)",
                           prog=PROG, usage=SERVE_USAGE, description=DESCRIPTION,
                           epilog=EPILOG, formatter_class=_Formatter)
    g = serve.add_argument_group("web")
    g.add_argument("--web.listen-address", dest="listen", default=f":{DEFAULT_PORT}",
                   metavar="HOST:PORT", help="address to listen on for /metrics")
    g.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics",
                   type=_telemetry_path, metavar="PATH",
                   help="path under which to expose metrics; not /, /-/healthy or /-/ready")
    g.add_argument("--web.config.file", dest="web_config", metavar="FILE",
                   help="TLS and basic auth, exporter-toolkit format")
    check = sub.add_parser(
        "check", parents=[common], prog=f"{PROG} check", formatter_class=_Formatter,
        help="diagnose this host; exit 0 healthy, 1 fault or cause found",
        description="Human-readable diagnosis of this host. Exit 0: healthy; 1: a fault is "
                    "active or a cause\nis found; 2: a usage error.",
        epilog=f"'{PROG} --help' lists serve's flags (serve is the default command).")
    textfile = sub.add_parser(
        "textfile", parents=[common], prog=f"{PROG} textfile", formatter_class=_Formatter,
        usage=f"{PROG} textfile --output PATH [flags]",
        help="write one exposition atomically (for node_exporter)",
        description="Write one exposition atomically, for node_exporter's textfile "
                    "collector or cron.",
        epilog=f"'{PROG} --help' lists serve's flags (serve is the default command).")
    textfile.add_argument("--output", required=True, metavar="PATH",
                          help="file to write (written beside it, then renamed), or - for "
                               "stdout")
    check.usage = f"{PROG} check [flags]"
    parser.commands = {"serve": serve, "check": check, "textfile": textfile}
    for name, command in parser.commands.items():
        command.add_argument("--version", action=_Version)
        command.set_defaults(command=name)
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
    command = "serve"
    if argv and argv[0] in COMMANDS:
        command = argv.pop(0)
    elif argv and not argv[0].startswith("-"):
        unknown_command(argv[0])
    parser = build_parser().commands[command]
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
