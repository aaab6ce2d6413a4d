"""The command line as a user meets it, through the installed console script: help that
shows serve's flags (serve is the default command) with their defaults, one line for any
mistake (the nearest flag or command named, what a value should look like), exit 2, and a
--version after any command that says what node_exporter's says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from amp_exporter import __version__

EXE = Path(sys.executable).parent / "amp-exporter"
HINT = "(see amp-exporter --help)"


def run(*args: str) -> subprocess.CompletedProcess:
    assert EXE.exists(), "pip install -e . should provide the amp-exporter command"
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "100"}, cwd=REPO)


def entries(help_text: str) -> dict[str, str]:
    """{first option string: the help text of its entry, joined on one line}"""
    found: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        start = re.match(r"  (-{1,2}[\w.-]+)\S*(?:, \S+)*(?: \S+)?(?: {2,}(.*))?$", line)
        if start:
            current = start[1]
            found[current] = start[2] or ""
        elif current and line.startswith("      "):
            found[current] = f"{found[current]} {line.strip()}".strip()
        else:
            current = None
    return found


# -- help ----------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_top_level_help_is_serves_with_the_other_commands_in_the_usage(flag):
    result = run(flag)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: amp-exporter [serve] [flags]")
    usage = result.stdout.split("\n\n")[0]
    assert "amp-exporter check [flags]" in usage
    assert "amp-exporter textfile --output PATH [flags]" in usage
    flat = " ".join(result.stdout.split())
    assert "'amp-exporter check --help'" in flat and "'amp-exporter textfile --help'" in flat
    flags = entries(result.stdout)
    for serve_flag in ("--web.listen-address", "--web.telemetry-path", "--web.config.file",
                       "--path.rootfs", "--ampcli.timeout", "--log.level", "--version"):
        assert serve_flag in flags, serve_flag
    assert "--output" not in flags
    assert run("serve", flag).stdout == result.stdout


@pytest.mark.parametrize(("command", "has", "lacks"), [
    ("check", "--path.rootfs", "--web.listen-address"),
    ("textfile", "--output", "--web.telemetry-path"),
])
def test_each_command_has_its_own_help(command, has, lacks):
    result = run(command, "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(f"usage: amp-exporter {command} ")
    flags = entries(result.stdout)
    assert has in flags and lacks not in flags and "--version" in flags


@pytest.mark.parametrize("command", ["serve", "check", "textfile"])
def test_every_flag_has_help_and_shows_its_default(command):
    flags = entries(run(command, "--help").stdout)
    assert len(flags) > 20
    for flag, text in flags.items():
        if flag in ("-h", "--version", "--output"):  # --output is required: no default
            continue
        assert text.strip(), f"{flag} has no help"
        assert "(default" in text, f"{flag} shows no default: {text}"


@pytest.mark.parametrize(("flag", "default"), [
    ("--web.listen-address", ":9872"), ("--web.telemetry-path", "/metrics"),
    ("--web.config.file", "none"), ("--path.rootfs", "/"), ("--ampcli.timeout", "5"),
    ("--log.level", "info"), ("--log.format", "logfmt"), ("--events.capacity", "100000"),
    ("--events.load-timeout", "60"), ("--check.min-available-memory", "256MiB"),
    ("--collector.disable-defaults", "off"), ("--ampcli.chroot", "auto"),
])
def test_defaults_shown_are_the_real_ones(flag, default):
    assert entries(run("--help").stdout)[flag].endswith(f"(default {default})")


# -- mistakes: one line, exit 2 ------------------------------------------------------------

def one_line_error(result: subprocess.CompletedProcess, hint: str = HINT) -> str:
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "usage:" not in result.stderr
    assert len(lines) == 2 and lines[1] == hint, lines
    assert lines[0].startswith("amp-exporter: error: "), lines
    return lines[0].removeprefix("amp-exporter: error: ")


@pytest.mark.parametrize(("args", "said", "hint"), [
    (["--web.listen-adress=:9999"],
     "unknown flag '--web.listen-adress', did you mean '--web.listen-address'?", HINT),
    (["--web.listen-adress", ":9999"],
     "unknown flag '--web.listen-adress', did you mean '--web.listen-address'?", HINT),
    (["serve", "--log.levle=debug"], "unknown flag '--log.levle', did you mean '--log.level'?",
     HINT),
    (["--no-collector.bfp"], "unknown flag '--no-collector.bfp', did you mean "
     "'--no-collector.bpf'?", HINT),
    (["check", "--ampcli.timout", "1"],
     "unknown flag '--ampcli.timout', did you mean '--ampcli.timeout'?",
     "(see amp-exporter check --help)"),
    (["--zzzzzz"], "unknown flag '--zzzzzz'", HINT),
    (["check", "--web.listen-address", ":1"], "unknown flag '--web.listen-address' for "
     "amp-exporter check: it is a flag of 'amp-exporter serve'",
     "(see amp-exporter check --help)"),
    (["serve", "--output", "-"], "unknown flag '--output' for amp-exporter: it is a flag of "
     "'amp-exporter textfile'", HINT),
])
def test_unknown_flag_names_the_nearest_one(args, said, hint):
    assert one_line_error(run(*args), hint) == said


@pytest.mark.parametrize(("args", "said"), [
    (["chek"], "unknown command 'chek', did you mean 'check'?"),
    (["textfiel", "--output", "-"], "unknown command 'textfiel', did you mean 'textfile'?"),
    (["zzz"], "unknown command 'zzz' (commands: serve, check, textfile)"),
    (["--log.level", "debug", "check"],
     "unexpected argument 'check': the command comes first, as in 'amp-exporter check [flags]'"),
    (["--log.level", "debug", "chekc"],
     "unexpected argument 'chekc', did you mean the command 'check' (it comes first)?"),
])
def test_unknown_command_names_the_nearest_one(args, said):
    assert one_line_error(run(*args)) == said


SECONDS = "expected a number of seconds"
SIZE = ("expected a size like 512MiB, 1GiB or 1073741824 (units B, K, KB, KiB, M, MB, MiB, G, "
        "GB, GiB, any case; K = 1024)")


@pytest.mark.parametrize(("args", "said"), [
    (["--ampcli.timeout", "abc"], f"--ampcli.timeout: invalid value 'abc': {SECONDS} > 0"),
    (["--ampcli.timeout=-1"], f"--ampcli.timeout: invalid value '-1': {SECONDS} > 0"),
    (["--ampcli.timeout", "nan"], f"--ampcli.timeout: invalid value 'nan': {SECONDS} > 0"),
    (["--ampcli.cache", "-1"], f"--ampcli.cache: invalid value '-1': {SECONDS} >= 0"),
    (["--check.scan-restarts", "1.5"],
     "--check.scan-restarts: invalid value '1.5': expected a whole number > 0"),
    (["--events.capacity", "0"],
     "--events.capacity: invalid value '0': expected a number of events per second > 0"),
    (["--check.min-available-memory", "12XB"],
     f"--check.min-available-memory: invalid value '12XB': {SIZE}"),
    (["check", "--check.min-available-memory=-1G"],
     f"--check.min-available-memory: invalid value '-1G': {SIZE}"),
    (["--log.level", "verbose"],
     "--log.level: invalid value 'verbose': expected one of debug, info, warn, error"),
    (["--ampcli.chroot", "sometimes"],
     "--ampcli.chroot: invalid value 'sometimes': expected one of auto, always, never"),
    (["--ampcli.timeout"], "--ampcli.timeout: expected a value"),
    (["--collector.disable-defaults=yes"],
     "--collector.disable-defaults: takes no value, got 'yes'"),
])
def test_bad_value_names_the_flag_and_the_accepted_form(args, said):
    hint = f"(see amp-exporter {args[0]} --help)" if args[0] in ("check", "textfile") else HINT
    line = one_line_error(run(*args), hint)
    assert line == said
    assert "_size" not in line and "_number" not in line


@pytest.mark.parametrize(("path", "said"), [
    ("metrics", "expected a URL path starting with /, e.g. /metrics"),
    ("", "expected a URL path starting with /, e.g. /metrics"),
    *[(p, "expected a path other than /, /-/healthy, /-/ready (the exporter's own pages), "
          "e.g. /metrics") for p in ("/", "/-/healthy", "/-/ready")],
])
def test_telemetry_path_must_be_a_path_of_its_own(path, said):
    line = one_line_error(run("--web.telemetry-path", path))
    assert line == f"--web.telemetry-path: invalid value {path!r}: {said}"


def test_good_values_are_taken():
    # Past every flag's value to the first check that is not argparse's: the root.
    result = run("--web.telemetry-path", "/custom/metrics", "--check.min-available-memory",
                 "1.5GiB", "--ampcli.cache", "0", "--log.level=debug", "--collector.bpf",
                 "--path.rootfs", "/does/not/exist")
    assert one_line_error(result) == "--path.rootfs /does/not/exist: not a directory"


# -- version -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--version"], ["serve", "--version"], ["check", "--version"],
                                  ["textfile", "--version"],
                                  ["check", "--log.level", "debug", "--version"]])
def test_version_everywhere_as_node_exporter_says_it(args):
    result = run(*args)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines
    first = re.fullmatch(r"amp-exporter, version (\S+) \(revision: (\w+)\)", lines[0])
    assert first and first[1] == __version__, lines[0]
    revision_file = REPO / "amp_exporter" / "REVISION"
    expected = revision_file.read_text().split()[0] if revision_file.exists() else "unknown"
    assert first[2] == expected
    python = re.fullmatch(r"  python version: (\d+\.\d+\.\d+\S*) \((.+)\)", lines[1])
    assert python and python[1] == sys.version.split()[0], lines[1]
    assert os.path.isabs(python[2]) and os.path.exists(python[2])
    assert lines[2] == f"  platform: {sys.platform}/{os.uname().machine}"


@pytest.mark.parametrize(("content", "shown"), [
    ("3f2a9c1\n", "3f2a9c1"), ("", "unknown"), ("not/a revision\n", "unknown"), (None, "unknown"),
])
def test_revision_comes_from_the_build_time_file(tmp_path, content, shown):
    path = tmp_path / "REVISION"
    if content is not None:
        path.write_text(content)
    code = ("import sys\nfrom amp_exporter import cli\n"
            f"cli.REVISION_FILE = {str(path)!r}\ncli.main(['--version'])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == \
        f"amp-exporter, version {__version__} (revision: {shown})"


def test_a_plain_start_loads_nothing_it_does_not_need():
    # difflib is for mistakes only; ssl alone is ~4.4 MiB of RSS, wsgiref/http.server pull
    # email and http.client, yaml and webconfig are for --web.config.file, html and the
    # status page for a visit to /: a server that is only scraped needs none of them.
    unneeded = ("difflib", "ssl", "_ssl", "yaml", "http.server", "http.client", "wsgiref",
                "email", "html", "amp_exporter.webconfig", "amp_exporter.statuspage")
    code = ("import sys\nfrom amp_exporter import cli, web\n"
            "cli.build_parser().commands['serve'].parse_args([])\nweb.make_app\n"
            f"print(','.join(m for m in {unneeded!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
