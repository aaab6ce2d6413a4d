"""Property-based tests (hypothesis) for every parser of host or connector input.

Two properties per parser:
- arbitrary input (text, or bytes decoded as read_text decodes them) raises only the
  parser's own documented error (ValueError, StatusParseError), never IndexError,
  UnicodeError, KeyError, ... and never takes more than linear time;
- valid generated input round-trips to the values it was generated from.

Found and fixed with these tests (regressions kept as @example):
- status.parse_status: quadratic regexes (a 256 KiB line from ampcli took minutes, holding
  the ampcli lock, so every scrape hung), and plain ValueError from int() on a fault ID
  or count of more than 4,300 digits;
- processes._parse_stat: IndexError on a short stat line;
- bpfsys.possible_cpus: UnicodeDecodeError on non-UTF-8 bytes, negative counts for '3-1';
- webconfig.parse: PyYAML's own ValueError, IndexError and AttributeError escaped on
  `a: 2001-13-45`, `0: !!int` or `a: !!timestamp x` (a traceback at start-up instead of
  exit 2 naming the problem), and a TypeError on a list as client_auth_type, min_version
  or max_version;
- webconfig.BasicAuth.credentials: ValueError on a non-ASCII token ('BASIC \x80'), so the
  request failed instead of getting 401;
- selinux.state: a NUL in SELINUXTYPE made module_state raise ValueError (the collector
  failed as 'internal', not 'parse'); a SELINUXTYPE that cannot be a directory name is
  now refused by state() itself;
- the command line's numbers: `--check.min-available-memory=1e400G` (or `infG`) ended in
  an OverflowError traceback; nan and inf were taken as timeouts, windows and caches, and
  negative numbers as a size, a cache or a duration.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import re
import stat
import string
import tempfile
import time
import types
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from test_restarts import exporter_for

from amp_exporter import webconfig
from amp_exporter.catalog import SELINUX_MODULE
from amp_exporter.cli import build_parser
from amp_exporter.collectors.logs import LEVELS, LOG_FILES, line_level
from amp_exporter.collectors.network import parse_proc_net_tcp
from amp_exporter.host import (
    accounts,
    bpfsys,
    connector_files,
    events,
    linux,
    selinux,
    sockdiag,
)
from amp_exporter.host.ampcli import OUTPUT_LIMIT
from amp_exporter.host.paths import HostPaths
from amp_exporter.host.processes import ProcessTable, _parse_stat
from amp_exporter.host.status import StatusParseError, parse_scan_time, parse_status
from amp_exporter.web import parse_listen_address

# ~200 inputs per property keeps the whole file near 20 s; no example database on disk.
settings.register_profile("amp", max_examples=200, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.load_profile("amp")


# -- strategies ---------------------------------------------------------------------------

def _decoded(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")  # as hostpaths.read_text does


# Any text a host file could hand a parser: unicode text, and raw bytes decoded as
# read_text decodes them (replacement characters, NULs, control characters).
ANY_TEXT = st.one_of(st.text(), st.binary().map(_decoded),
                     st.binary().map(lambda b: b.decode("latin-1")))
LINE_BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"]


def lines_of(fragments: list[str]) -> st.SearchStrategy[str]:
    """Text made of lines of grammar fragments, junk and odd separators: close enough to
    the real format to reach deep into the parser, wrong enough to break it."""
    token = st.one_of(st.sampled_from(fragments), st.text(max_size=4))
    line = st.lists(token, max_size=10).map("".join)
    sep = st.sampled_from(LINE_BREAKS)
    return st.lists(st.tuples(line, sep), max_size=15).map(
        lambda rows: "".join(a + b for a, b in rows))


def only_raises(fn, errors, *args):
    """fn(*args), or None when it raised one of `errors` (never a UnicodeError)."""
    try:
        return fn(*args)
    except errors as exc:
        assert not isinstance(exc, UnicodeError), repr(exc)
        return None


def linear(fn, *args, seconds: float = 1.0) -> None:
    start = time.perf_counter()
    with contextlib.suppress(ValueError):
        fn(*args)
    assert time.perf_counter() - start < seconds, f"{fn.__name__} is too slow on long input"


WORD = st.text(string.ascii_letters, min_size=1, max_size=12)
# One line of printable text, no leading/trailing whitespace (what a parser strips).
ONE_LINE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
                   max_size=40).map(str.strip)
XML_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs"),
                                 blacklist_characters="\ufffe\uffff"), max_size=30).map(
    str.strip)


# -- ampcli status --------------------------------------------------------------------------

STATUS_FRAGMENTS = ["Status", "Mode", "Scan", "Last Scan", "Policy", "Faults", "Fault IDs",
                    "ID ", "ampcli>", ":", ": ", " ", "\t", " - ", "-", "(#", ")", "#", "1",
                    "18", "007", "99999999", "Major", "Critical", "Minor", "None", ", ", "x",
                    "\x00", "[logger]", "\u00a0", "\u0663", "Connected", "Degraded"]


@given(st.one_of(ANY_TEXT, lines_of(STATUS_FRAGMENTS)))
@example("Status: x\nFault IDs: " + "9" * 5000)  # int() refuses > 4300 digits
@example("Status: x\nID " + "1" * 5000 + " - Major: y")
@example("Faults: " + "1" * 5000 + " Major")
@example("Status: x\nPolicy: (#1)(#2)")
def test_status_arbitrary_text_is_a_status_or_a_parse_error(text):
    status = only_raises(parse_status, StatusParseError, text)
    if status is None:
        return
    assert all(0 <= fid <= 10_000 for fid in status.faults)
    assert all(f.severity is None or f.severity.isalpha() for f in status.faults.values())
    assert all(isinstance(n, int) for n in status.fault_counts.values())
    status.policy, status.last_scan_timestamp, status.connected, status.degraded  # noqa: B018


@pytest.mark.parametrize("line", [
    "a" + " " * OUTPUT_LIMIT + "b",                    # key pattern: lazy group before \s*
    "Status: a" + " " * OUTPUT_LIMIT + "b",            # value pattern
    "ID 1 - Major: a" + " " * OUTPUT_LIMIT + "b",      # fault line message
    "Faults: " + "1" * OUTPUT_LIMIT,                   # fault counts: backtracking digits
    "Policy: x" + " " * OUTPUT_LIMIT + "y",            # policy (#serial)
    "Fault IDs: " + "1 " * (OUTPUT_LIMIT // 2),
])
def test_status_is_linear_on_the_longest_output_ampcli_may_print(line):
    def parse_all(text):
        status = parse_status(text)
        return status.policy

    linear(parse_all, line)


# The parser before it was made linear, as a reference: same answers on short input.
_OLD_KV = re.compile(r"^\s*([A-Za-z][A-Za-z \-]*?)\s*:\s*(.*?)\s*$")
_OLD_FAULT = re.compile(r"^\s*ID\s+(\d+)\s*-\s*([A-Za-z]+)\s*:\s*(.*?)\s*$")
_OLD_COUNT = re.compile(r"(\d+)\s+([A-Za-z]+)")
_OLD_POLICY = re.compile(r"^(.*?)\s*\(#(\d+)\)\s*$")


def _old_parse(text):
    fields, faults, counts = {}, {}, {}
    for raw in text.splitlines():
        line = raw.replace("\x00", "").strip()
        if line.startswith("ampcli>"):
            line = line[len("ampcli>"):].strip()
        m = _OLD_FAULT.match(line)
        if m:
            if len(m.group(1)) < 10 and int(m.group(1)) <= 10_000:
                faults[int(m.group(1))] = (m.group(2).capitalize(), m.group(3))
            continue
        m = _OLD_KV.match(line)
        if m:
            key = " ".join(m.group(1).lower().split())
            if key not in fields:
                fields[key] = m.group(2)
                if key == "faults":
                    counts.update((w.lower(), int(n)) for n, w in _OLD_COUNT.findall(m.group(2)))
    policy = None
    if fields.get("policy"):
        m = _OLD_POLICY.match(fields["policy"])
        policy = m.groups() if m else (fields["policy"].strip(), None)
    return fields, faults, counts, policy


@given(lines_of(STATUS_FRAGMENTS))
@example("Status: x\nPolicy: Audit  (#12) \nFaults: 12 Major, 3x 4 Minor")
def test_status_answers_as_before_the_linear_rewrite(text):
    fields, faults, counts, policy = _old_parse(text)
    status = only_raises(parse_status, StatusParseError, text)
    if status is None:
        return
    assert status.fields == fields
    assert {i: (f.severity, f.message) for i, f in status.faults.items()
            if i in faults} == faults
    assert status.fault_counts == counts
    if policy is not None:
        assert status.policy == policy


SEVERITIES = ("Critical", "Major", "Minor")


@st.composite
def status_outputs(draw):
    faults = draw(st.dictionaries(st.integers(1, 10_000), st.tuples(
        st.sampled_from(SEVERITIES), ONE_LINE), max_size=5))
    h = {"connected": draw(st.booleans()), "mode": draw(st.sampled_from(["Normal", "Degraded"])),
         "policy": draw(ONE_LINE.filter(lambda s: "(#" not in s and s)),
         "serial": draw(st.integers(0, 10**6)), "faults": faults}
    width = draw(st.sampled_from([0, 15, 24]))
    counts: dict[str, int] = {}
    for sev, _ in faults.values():
        counts[sev] = counts.get(sev, 0) + 1
    rows = [("Status", "Connected" if h["connected"] else "Disconnected"), ("Mode", h["mode"]),
            ("Scan", "Ready for scan"), ("Last Scan", "2023-06-19 02:02:03 PM"),
            ("Policy", f"{h['policy']} (#{h['serial']})"),
            ("Faults", ", ".join(f"{n} {s}" for s, n in counts.items()) or "None"),
            ("Fault IDs", ", ".join(map(str, faults)) or "None")]
    lines = [f"{k}:{' ' * max(1, width - len(k) - 1)}{v}" for k, v in rows]
    lines += [f"ID {i} - {sev}: {msg}" for i, (sev, msg) in faults.items()]
    if draw(st.booleans()):
        lines = ["[logger] Set minimum reported log level to notice", "Trying to connect...",
                 "Connected.", *lines]
    if draw(st.booleans()):
        lines[0] = "ampcli> " + lines[0]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "\r\n", ""])), h


@given(status_outputs())
def test_status_round_trips(case):
    text, h = case
    status = parse_status(text)
    assert status.connected is h["connected"]
    assert status.degraded is (h["mode"] == "Degraded")
    assert status.policy == (h["policy"], str(h["serial"]))
    assert {i: (f.severity, f.message) for i, f in status.faults.items()} == h["faults"]
    assert sum(status.fault_counts.values()) == len(h["faults"])
    assert status.last_scan_timestamp is not None


SCAN_FRAGMENTS = ["2023", "-", "06", "6", "19", "1969-12-31", "0000", "9999", " ", ":", "00",
                  "02", "12", "13", "23", "24", "59", "60", "61", "PM", "am", "\u00a0", "+0000",
                  "Z", "T", ".5", "%p", "\u0663"]


@given(st.one_of(st.none(), ANY_TEXT, lines_of(SCAN_FRAGMENTS)))
@example("1969-12-31 23:59:59")  # mktime() is -1 here: a time, not an error
@example("9999-12-31 11:59:59 PM")
def test_scan_time_is_a_time_or_none(value):
    when = parse_scan_time(value)
    assert when is None or (isinstance(when, float) and math.isfinite(when))


@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
       .map(lambda d: d.replace(microsecond=0)),
       st.booleans(), st.booleans(), st.sampled_from([str.upper, str.lower, str.capitalize]),
       st.text(" \t\n\u00a0\u3000", min_size=1, max_size=3),  # whitespace runs are one space
       st.text(" \t\n\u00a0\u3000", min_size=1, max_size=3), st.text(" \t", max_size=2))
@example(datetime(2023, 6, 19, 0, 2, 3), True, True, str.upper, " ", " ", "")  # 12:02:03 AM
@example(datetime(2023, 6, 19, 12, 2, 3), True, False, str.lower, " ", " ", "")  # 12:2:3 pm
@example(datetime(1969, 12, 31, 23, 59, 59), False, True, str.upper, " ", " ", "")
def test_scan_time_round_trips(when, twelve, padded, case, gap, gap_ampm, around):
    assume(datetime.fromtimestamp(when.timestamp()) == when)  # not in a DST gap (local time)
    z = "02d" if padded else "d"
    hour = (when.hour % 12 or 12) if twelve else when.hour
    text = (f"{when.year:04d}-{when.month:{z}}-{when.day:{z}}{gap}"
            f"{hour:{z}}:{when.minute:{z}}:{when.second:{z}}")
    if twelve:
        text += gap_ampm + case("AM" if when.hour < 12 else "PM")
    seconds = parse_scan_time(around + text + around)
    assert seconds is not None and datetime.fromtimestamp(seconds) == when


# -- etc/passwd, etc/group, login.defs ------------------------------------------------------

@given(st.one_of(ANY_TEXT, lines_of(["root", ":", "x", "0", "#", "+", "-", "::", "/bin/sh"])))
def test_colon_file_is_entries_or_a_value_error(text):
    entries = only_raises(accounts.parse_colon_file, ValueError, text)
    if entries is not None:
        assert all(name and len(fields) >= 3 for name, fields in entries.items())


NAME = st.from_regex(r"[a-z_][a-z0-9_-]{0,30}", fullmatch=True)
FIELD = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
                              blacklist_characters=":"), max_size=20)


@given(st.lists(st.tuples(NAME, st.lists(FIELD, min_size=2, max_size=6)), max_size=10),
       st.lists(st.sampled_from(["", "# comment: x", "+::::::", "-@netgroup", "   "]),
                max_size=3))
def test_colon_file_round_trips(rows, noise):
    text = "\n".join([":".join([n, *f]) for n, f in rows] + noise) + "\n"
    expected = {}
    for name, fields in rows:
        expected.setdefault(name, [name, *fields])
    assert accounts.parse_colon_file(text) == expected


@given(st.one_of(ANY_TEXT, lines_of(["USERGROUPS_ENAB", " ", "\t", "yes", "no", "#"])))
def test_login_defs_never_fails(text):
    assert isinstance(accounts.parse_login_defs(text), dict)


@given(st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,20}", fullmatch=True), ONE_LINE,
                       max_size=8),
       st.sampled_from([" ", "\t", "   ", " \t "]))
def test_login_defs_round_trips(values, sep):
    text = "# header\n\n" + "".join(f"{k}{sep}{v}\n" for k, v in values.items())
    assert accounts.parse_login_defs(text) == values


# -- proc/modules, osrelease, meminfo, efivar ------------------------------------------------

@given(st.one_of(ANY_TEXT, lines_of(["ampfsm", " ", "61440", "2", "-", "Live", "0xffff",
                                     "(OE)", "\u00b2"])))
def test_modules_are_a_dict_or_a_value_error(text):
    only_raises(linux.parse_modules, ValueError, text)


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True),
                       st.tuples(st.integers(0, 2**40), st.integers(0, 99),
                                 st.sampled_from(["Live", "Loading", "Unloading"]),
                                 st.sampled_from(["", " (OE)", " (POE)"])), max_size=10))
def test_modules_round_trip(mods):
    text = "".join(f"{n} {size} {ref} - {state} 0xffffffffc0a1b000{taint}\n"
                   for n, (size, ref, state, taint) in mods.items())
    assert linux.parse_modules(text) == {n: v[2] for n, v in mods.items()}


@given(ANY_TEXT)
@example("5." + "1" * 5000)
def test_release_is_a_pair_or_a_value_error(text):
    only_raises(linux.parse_release, ValueError, text)


@given(st.integers(0, 10**6), st.integers(0, 10**6), ONE_LINE)
def test_release_round_trips(major, minor, rest):
    assert linux.parse_release(f"{major}.{minor}{rest and '-' + rest}\n") == (major, minor)


@given(st.one_of(ANY_TEXT, lines_of(["MemTotal", "MemAvailable", ":", " ", "1234", "kB",
                                     "\u00b2", "\u0663"])))
@example("MemTotal: \u00b2 kB")  # isdigit() but not int(): still a ValueError
def test_meminfo_is_values_or_a_value_error(text):
    only_raises(linux.parse_meminfo, ValueError, text)


@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_()]{0,20}", fullmatch=True),
                       st.tuples(st.integers(0, 2**50), st.booleans()), max_size=10),
       st.integers(0, 2**40))
def test_meminfo_round_trips(values, total):
    values = {**values, "MemTotal": (total, True)}
    text = "".join(f"{k}:{' ' * 8}{n}{' kB' if kb else ''}\n" for k, (n, kb) in values.items())
    assert linux.parse_meminfo(text) == {k: n * (1024 if kb else 1)
                                         for k, (n, kb) in values.items()}


@given(st.binary(max_size=64))
def test_efivar_is_a_bool_or_a_value_error(data):
    result = only_raises(linux.parse_efivar_bool, ValueError, data)
    assert (result is None) == (len(data) < 5)


@given(st.binary(min_size=4, max_size=4), st.integers(0, 255), st.binary(max_size=8))
def test_efivar_round_trips(attrs, value, rest):
    assert linux.parse_efivar_bool(attrs + bytes([value]) + rest) is (value == 1)


# -- SELinux config -------------------------------------------------------------------------

@given(st.one_of(ANY_TEXT, lines_of(["SELINUX", "=", "enforcing", "#", '"', "'"])))
def test_selinux_config_never_fails(text):
    assert isinstance(selinux.parse_config(text), dict)


@given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
                       st.text(string.ascii_letters + string.digits + "-_./ ", max_size=20).map(
                           str.strip), max_size=8),
       st.sampled_from(["", '"', "'"]))
def test_selinux_config_round_trips(values, quote):
    text = "# comment=x\n" + "".join(f" {k} = {quote}{v}{quote}\n" for k, v in values.items())
    expected = {}
    for k, v in values.items():
        expected[k.upper()] = v
    assert selinux.parse_config(text) == expected


# -- SELinux state and module store, over a host tree ----------------------------------------

DIR = "<a directory>"  # in a tree description: make a directory here, not a file
MODULE = SELINUX_MODULE
# Path parts of a module store, each level's choices: layouts right, wrong and half made.
STORE_PARTS = [["var/lib/selinux", "etc/selinux"], ["targeted", "mls"], ["active"],
               ["modules"], ["100", "400", "disabled", "tmp", "\u0663"],
               [MODULE, "other", MODULE + ".pp"], ["cil", "hll"]]
STORE_ENTRIES = st.lists(st.tuples(
    st.lists(st.integers(0, 4), min_size=1, max_size=len(STORE_PARTS)),
    st.sampled_from([DIR, b"", b"x"])), max_size=12)


def _make_tree(root: Path, files: dict[str, object]) -> None:
    """Files (bytes) and directories (DIR) under root; an entry a file or directory already
    made stands in the way of is left out (as it could not exist on a host either)."""
    for rel, data in files.items():
        path = root / rel
        with contextlib.suppress(OSError, ValueError):  # ValueError: a NUL in the name
            if data == DIR:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)


def _store_tree(entries, tree: dict[str, object]) -> dict[str, object]:
    for choices, data in entries:
        parts = [STORE_PARTS[level][i % len(STORE_PARTS[level])]
                 for level, i in enumerate(choices)]
        tree.setdefault("/".join(parts), data)
    return tree


SELINUX_CONFIG_FRAGMENTS = ["SELINUX", "SELINUXTYPE", "=", "enforcing", "permissive",
                            "targeted", "mls", "#", '"', "'", " ", "/", "..", "\x00", "\u00e9"]
# KEY=value lines whose values are anything: what a hand-edited config may say.
SELINUX_CONFIG_LINES = st.lists(st.tuples(
    st.sampled_from(["SELINUX", "SELINUXTYPE", "selinuxtype", " SELINUXTYPE ", "#SELINUX"]),
    st.sampled_from(["=", " = "]),
    st.lists(st.one_of(st.sampled_from(SELINUX_CONFIG_FRAGMENTS), st.text(max_size=3)),
             max_size=4).map("".join)).map("".join), max_size=4).map("\n".join)


@given(enforce=st.one_of(st.sampled_from([None, b"0", b"1\n", b" 1 \r\n", b"\xc2\xa00", b"2"]),
                         st.just(DIR), st.binary(max_size=12)),
       config=st.one_of(SELINUX_CONFIG_LINES.map(str.encode), st.none(), st.just(DIR),
                        st.binary(max_size=100),
                        lines_of(SELINUX_CONFIG_FRAGMENTS).map(str.encode)),
       store=STORE_ENTRIES)
@example(enforce=b"1", config=b"SELINUXTYPE=x\x00y\n", store=[])  # module_state: ValueError
def test_selinux_state_and_module_store_give_documented_answers(scratch, enforce, config, store):
    """state(): None, an SELinuxState, ValueError (selinuxfs says neither 0 nor 1, or
    SELINUXTYPE cannot name a directory) or OSError (a file that cannot be read);
    module_state(): installed, disabled, missing or OSError. The collector maps exactly
    these to its answers and error reasons."""
    with tempfile.TemporaryDirectory(dir=scratch) as d:
        root = Path(d)
        tree: dict[str, object] = {}
        if enforce is not None:
            tree["sys/fs/selinux/enforce"] = enforce
        if config is not None:
            tree["etc/selinux/config"] = config
        _make_tree(root, _store_tree(store, tree))  # a store entry in their way is left out
        paths = HostPaths(str(root))
        state = only_raises(selinux.state, (ValueError, OSError), paths)
        try:  # the config is read first: a file, or none (a store entry may block the path)
            config_readable = stat.S_ISREG((root / "etc/selinux/config").stat().st_mode)
        except FileNotFoundError:
            config_readable = True
        except OSError:
            config_readable = False
        if isinstance(enforce, bytes) and config_readable:
            first = _decoded(enforce).split("\n", 1)[0].strip()
            if first not in ("0", "1"):
                assert state is None  # it raised the ValueError
            elif state is None:  # only a type that cannot be a store's directory refuses it
                policy = selinux.parse_config(_decoded(config or b"")).get("SELINUXTYPE", "")
                assert "/" in policy or "\0" in policy or policy in (".", "..")
            else:
                assert state == selinux.SELinuxState(
                    first == "1", state.policy_type, "selinuxfs")
        if state is None:
            return
        assert state.policy_type and state.source in ("selinuxfs", "config")
        for name in (MODULE, "other"):
            answer = only_raises(selinux.module_state, OSError, paths, state.policy_type, name)
            assert answer in ("installed", "disabled", "missing", None)


# One store's content: which of the module's traces it holds (all: `semodule -d` leaves the
# module in place and adds the marker).
STORE_CONTENT = st.one_of(st.none(), st.fixed_dictionaries({
    "installed": st.booleans(), "disabled": st.booleans(), "others": st.booleans(),
    "priority": st.sampled_from(["100", "200", "400"])}))


@given(policy=st.sampled_from(["targeted", "mls", "minimum"]),
       rhel8=STORE_CONTENT, rhel7=STORE_CONTENT, decoy=STORE_CONTENT,
       name=st.one_of(st.just(MODULE), st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True)))
def test_selinux_module_store_round_trips(scratch, policy, rhel8, rhel7, decoy, name):
    """RHEL 8+ (var/lib/selinux) is read before RHEL 7 (etc/selinux); a store that holds no
    trace of the module lets the next one answer; another policy type's store never does."""
    other_policy = "mls" if policy != "mls" else "targeted"
    tree: dict[str, object] = {}
    for store, policy_type, content in (("var/lib/selinux", policy, rhel8),
                                        ("etc/selinux", policy, rhel7),
                                        ("var/lib/selinux", other_policy, decoy),
                                        ("etc/selinux", other_policy, decoy)):
        if content is None:
            continue
        modules = f"{store}/{policy_type}/active/modules"
        tree[modules] = DIR
        if content["installed"]:
            for part in ("cil", "hll", "lang_ext"):
                tree[f"{modules}/{content['priority']}/{name}/{part}"] = b"x"
        if content["disabled"]:
            tree[f"{modules}/disabled/{name}"] = b""
        if content["others"]:  # not the module: other modules, files, a non-priority dir
            tree[f"{modules}/100/{name}x/cil"] = b"x"
            tree[f"{modules}/300/{name}"] = b"x"
            tree[f"{modules}/400/{name}.pp"] = b"x"
            tree[f"{modules}/tmp/{name}/cil"] = b"x"
            tree[f"{modules}/disabled/{name}x"] = b""
    expected = "missing"
    for content in (rhel8, rhel7):
        if content and (content["disabled"] or content["installed"]):
            expected = "disabled" if content["disabled"] else "installed"
            break
    with tempfile.TemporaryDirectory(dir=scratch) as d:
        _make_tree(Path(d), tree)
        assert selinux.module_state(HostPaths(d), policy, name) == expected


@given(enforce=st.sampled_from([None, "0", "1"]),
       config=st.one_of(st.none(), st.fixed_dictionaries({}, optional={
           "SELINUX": st.sampled_from(["enforcing", "permissive", "disabled", "Enforcing"]),
           "SELINUXTYPE": st.sampled_from(["targeted", "mls", "minimum", ""])})),
       case=st.sampled_from([str.upper, str.lower]),
       quote=st.sampled_from(["", '"', "'"]), end=st.sampled_from(["\n", "\r\n", ""]))
def test_selinux_state_round_trips(scratch, enforce, config, case, quote, end):
    tree: dict[str, object] = {}
    if enforce is not None:
        tree["sys/fs/selinux/enforce"] = f"{enforce}{end}".encode()
    if config is not None:
        tree["etc/selinux/config"] = ("# SELINUX=enforcing\n\n" + "".join(
            f"{case(k)}={quote}{v}{quote}{end or chr(10)}" for k, v in config.items())).encode()
    policy = (config or {}).get("SELINUXTYPE") or "targeted"
    if enforce is not None:
        expected = selinux.SELinuxState(enforce == "1", policy, "selinuxfs")
    elif config:  # no selinuxfs: the config, when it says anything
        expected = selinux.SELinuxState(config.get("SELINUX") in ("enforcing", "Enforcing"),
                                        policy, "config")
    else:
        expected = None
    with tempfile.TemporaryDirectory(dir=scratch) as d:
        _make_tree(Path(d), tree)
        assert selinux.state(HostPaths(d)) == expected


# -- connector files: global.xml, policy.xml, .cvd headers ----------------------------------

XML_FRAGMENTS = ["<", ">", "</", "/>", "<?xml version='1.0'?>", "<!DOCTYPE x>", "<!--", "-->",
                 "version", "agent_version", "=", '"', "1.2.3", "10.20.30.40", "&amp;", "&x;",
                 "<![CDATA[", "]]>", "xmlns:a='u'", "a:", "config", "agent", "driver",
                 "protmode", "file", "policy", "name", "serial_number", "1", "0", "false"]


CONNECTOR_VERSION = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9}){2,7}")


@given(st.one_of(ANY_TEXT, lines_of(XML_FRAGMENTS)))
@example("<agent><version>1.2.3</version></agent>")
@example("<agent><version>" + "1" * 5000 + ".0.0</version></agent>")  # int() would refuse it
def test_version_is_a_version_or_none(text):
    version = connector_files.parse_version(text)
    assert version is None or CONNECTOR_VERSION.fullmatch(version)
    if version is not None:
        connector_files.version_tuple(version)


VERSION = st.lists(st.integers(0, 10**4), min_size=3, max_size=4).map(
    lambda parts: ".".join(map(str, parts)))
# Elements and attributes that hold a dotted version and are not the connector's.
OTHER_VERSIONS = [
    "<clamav><version>{v}</version></clamav>", "<engine_version>{v}</engine_version>",
    "<schema_version>{v}</schema_version>", "<agent_version>{v}</agent_version>",
    "<Version>{v}</Version>", "<x version='{v}'/>", "<defs><agent_version>{v}</agent_version>"
    "</defs>", "<updater><version>{v}</version></updater>", "<!-- version {v} -->",
]


@st.composite
def global_xmls(draw):
    """(global.xml text, the version parse_version must give or None): the connector's
    version at config/agent/version (or nowhere), among other versions that are not it."""
    ns = draw(st.sampled_from(["", "a:"]))
    xmlns = " xmlns:a='urn:x'" if ns else ""

    def others() -> str:
        found = draw(st.lists(st.tuples(st.sampled_from(OTHER_VERSIONS), VERSION), max_size=3))
        return "".join(t.format(v=v) for t, v in found)

    noise = escape(draw(XML_TEXT))
    where = draw(st.sampled_from(["agent", "agent", "none", "bad"]))
    version = draw(VERSION)
    if where == "agent":
        inner = f"<{ns}version>{draw(st.sampled_from(['', ' ', chr(10)]))}{version}</{ns}version>"
        expected = version
    elif where == "bad":
        text = draw(st.sampled_from(["v{v}", "{v} build 7", "{v}-1", "{v}.", "{v}.x", "x {v}",
                                     "{v} {noise}x", "1.2", "", "1.2.3.4.5.6.7.8.9"]))
        inner = (f"<{ns}version>{escape(text.format(v=version, noise=draw(XML_TEXT)))}"
                 f"</{ns}version>")
        expected = None  # not only a version: unknown, whatever it holds
    else:
        inner, expected = "", None
    agent = f"<{ns}agent>{others()}<{ns}uuid>{noise}</{ns}uuid>{inner}{others()}</{ns}agent>"
    xml = f"<?xml version='1.0'?><{ns}config{xmlns}>{others()}{agent}{others()}</{ns}config>"
    return xml, expected


@given(global_xmls())
def test_version_round_trips(case):
    xml, expected = case
    assert connector_files.parse_version(xml) == expected


@given(global_xmls(), st.integers(1, 100))
def test_malformed_global_xml_has_no_version(case, cut):
    xml, _ = case
    # Cut short: not XML, so no version, even when the version's text is still in it.
    assert connector_files.parse_version(xml[:max(0, len(xml) - cut)]) is None


@given(st.one_of(ANY_TEXT, lines_of(XML_FRAGMENTS)))
def test_policy_is_features_or_a_value_error(text):
    features = only_raises(connector_files.parse_policy, ValueError, text)
    if features is not None:
        assert set(features) == set(connector_files.POLICY_FEATURES)
    # policy_name: ElementTree's own ParseError on non-XML (it has no caller yet)
    only_raises(connector_files.policy_name, ET.ParseError, text)


@st.composite
def policies(draw):
    values = {f: draw(st.one_of(st.none(), st.sampled_from(["0", "1", "", "false", "2"])))
              for f in connector_files.POLICY_FEATURES}
    ns = draw(st.sampled_from(["", "a:"]))
    xmlns = " xmlns:a='urn:x'" if ns else ""
    body = ""
    for feature, value in values.items():
        if value is None:
            continue
        path = connector_files.POLICY_FEATURES[feature]
        inner = f"<{ns}{path[-1]}>{value}</{ns}{path[-1]}>"
        for name in reversed(path[:-1]):
            inner = f"<{ns}{name}>{inner}</{ns}{name}>"
        body += inner
    name, serial = draw(XML_TEXT.filter(bool)), draw(st.integers(0, 10**9))
    xml = (f"<{ns}policy{xmlns}><{ns}name>{escape(name)}</{ns}name>"
           f"<{ns}serial_number>{serial}</{ns}serial_number><{ns}config>{body}</{ns}config>"
           f"</{ns}policy>")
    # An empty element has no text: unknown (counted as on), not off.
    expected = {f: None if not v else v not in ("0", "false") for f, v in values.items()}
    return xml, expected, (name, str(serial))


@given(policies())
def test_policy_round_trips(case):
    xml, expected, name = case
    assert connector_files.parse_policy(xml) == expected
    assert connector_files.policy_name(xml) == name


@given(st.binary(max_size=600), st.integers(0, 10**7))
@example(b"ClamAV-VDB:" + b"\xff" * 600, 10_000)
def test_cvd_header_check_never_fails(data, size):
    assert connector_files.check_cvd_header(data, size) in (None, "truncated", "bad_header")
    values = connector_files.parse_cvd_header(data)
    assert set(values) <= {"version", "built"}


@st.composite
def cvd_headers(draw):
    version, sigs, built = (draw(st.integers(0, 10**9)) for _ in range(3))
    fields = ["ClamAV-VDB", "19 Nov 2025 10-00 +0000", str(version), str(sigs),
              str(draw(st.integers(0, 300))), "0" * 32, "s" * 86, "builder", str(built)]
    header = ":".join(fields).encode().ljust(512, draw(st.sampled_from([b" ", b"\x00"])))
    return header, version, built


@given(cvd_headers(), st.integers(1, 10**6))
def test_cvd_header_round_trips(case, body):
    header, version, built = case
    assert connector_files.check_cvd_header(header, 512 + body) is None
    assert connector_files.check_cvd_header(header, 512) == "truncated"
    assert connector_files.check_cvd_header(header[:511], 511) == "truncated"
    assert connector_files.parse_cvd_header(header) == {"version": version, "built": built}


# -- proc/PID/stat, fdinfo, proc/net/tcp, proc/stat, cpu/possible ---------------------------

@given(st.one_of(ANY_TEXT, lines_of(["1187", " (", "ampdaemon", ") ", ")", "S", " 1", " 0"])))
@example("1 (x) S 1")  # too few fields: was an IndexError
@example("no parenthesis at all " + "1 " * 30)
def test_stat_is_comm_ppid_and_start_or_a_value_error(text):
    only_raises(_parse_stat, ValueError, text)


@given(st.integers(1, 2**22), st.text(st.characters(blacklist_characters="\x00"), max_size=15),
       st.integers(0, 2**63), st.lists(st.integers(0, 2**40), min_size=30, max_size=40))
def test_stat_round_trips(pid, comm, start, rest):
    fields = ["S", *map(str, rest[:18]), str(start), *map(str, rest[18:])]
    assert _parse_stat(f"{pid} ({comm}) {' '.join(fields)}\n") == (comm, rest[0], start)


@pytest.fixture(scope="module")
def scratch():
    """A private directory for tree-reading parsers (hypothesis reuses it per example)."""
    with tempfile.TemporaryDirectory(prefix="amp-props-") as d:
        yield Path(d)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@given(data=st.one_of(st.binary(max_size=300), st.from_regex(
    rb"\A(pos:\t0\n)?(prog_type:\t\d{1,6}\n)?(prog_jited:\t1\n)?\Z")))
def test_fdinfo_prog_type_is_a_small_number_or_unknown(scratch, data):
    _write(scratch / "proc/7/fdinfo/3", data)
    table = types.SimpleNamespace(paths=HostPaths(str(scratch)))
    value = ProcessTable._prog_type(table, 7, "3")
    assert value == "unknown" or (value.isdigit() and len(value) <= 3)
    match = re.search(rb"^prog_type:\t(\d+)$", data, re.M)
    if match and len(match.group(1)) <= 3 and data.startswith(b"pos"):
        assert value == match.group(1).decode()


@given(st.one_of(ANY_TEXT, lines_of(["  0: ", "0100007F:0016", " ", "0A", "00000000:00000000",
                                     "00:00000000", "0", "22136", "sl"])))
def test_proc_net_tcp_never_fails(text):
    assert isinstance(parse_proc_net_tcp(text), dict)


@given(st.dictionaries(st.integers(1, 2**32), st.integers(1, 11), max_size=20))
def test_proc_net_tcp_round_trips(sockets):
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt" \
           "   uid  timeout inode\n"
    rows = [f"{i:4d}: 0F02000A:A3C2 18643CC6:01BB {state:02X} 00000000:00000000 00:00000000 "
            f"00000000     0        0 {inode} 1 ffff8f3c4a0b8000 100 0 0 10 0"
            for i, (inode, state) in enumerate(sockets.items())]
    assert parse_proc_net_tcp(head + "\n".join(rows)) == sockets


@given(st.binary(max_size=300))
def test_log_level_is_always_a_known_label(line):
    assert line_level(line) in (*LEVELS, "other")


LEVEL_WORDS = {**{lv: lv for lv in LEVELS}, "err": "error", "warn": "warning",
               "crit": "critical", "emerg": "emergency", "fatal": "critical", "trace": "other"}


@given(st.sampled_from(sorted(LEVEL_WORDS)), st.sampled_from([str.lower, str.upper,
                                                              str.capitalize]),
       st.binary(max_size=40).filter(lambda b: b"]:" not in b))
def test_log_level_round_trips(word, case, message):
    line = b"Nov 25 04:12:01 host ampdaemon[1187]: " + case(word).encode() + b": " + message
    assert line_level(line) == LEVEL_WORDS[word]


# -- the logs collector: incremental reading -------------------------------------------------

_LOG_LINE = b"Nov 25 04:12:01 host ampdaemon[1187]: %s: message"
# A chunk appended in one write: lines of any level, junk, empty lines, and a last line that
# may be left unfinished (no newline yet).
LOG_CHUNK = st.lists(st.tuples(
    st.one_of(st.sampled_from(sorted(LEVEL_WORDS)).map(
        lambda w: _LOG_LINE % w.capitalize().encode()),
        st.binary(max_size=10).map(lambda b: b.replace(b"\n", b""))),
    st.sampled_from([b"\n", b"\r\n", b""])), min_size=1, max_size=4).map(
    lambda rows: b"".join(a + b for a, b in rows))
LOG_CHANGES = st.lists(st.one_of(
    st.tuples(st.just("append"), LOG_CHUNK), st.tuples(st.just("append"), LOG_CHUNK),
    st.tuples(st.just("rotate"), st.booleans())),  # renamed away; a new empty file or none
    max_size=3)
# Rounds of changes, each ended by a collect: a truncation (to this % of the size the
# collector last saw, so that it can see it) comes last in its round, just before a collect.
LOG_ROUNDS = st.lists(st.tuples(LOG_CHANGES, st.one_of(st.none(), st.none(),
                                                       st.integers(0, 99))),
                      min_size=1, max_size=10)


class _LogModel:
    """What the collector can know of the log, from collect() to collect().

    Every file the log has been is known exactly (`files`, by generation; `gen` is the one
    at the log's path, None when there is none). Rotated files are kept under new names, so
    no inode is freed and reused during a run: a new file is always a new inode. At a
    collect: the first sight of a file starts at its end; a new file, or one shorter than at
    the last collect, is a rotation and restarts at 0. An epoch's counts are the non-empty
    complete lines between its start and the end of the file: within an epoch the file only
    grows (truncations are made shorter than the collector's last size and collected at
    once, so each is seen: a shrink then regrowth between two collects cannot be seen by
    size and inode, and is not generated).

    The collector keeps the file it read open: what was written to it after the last
    collect and before it was renamed away is still read, at the next collect, its
    unfinished last line counted as a line. A truncation loses what was written before it."""

    def __init__(self) -> None:
        self.files: dict[int, bytes] = {}
        self.gen: int | None = None
        self.seen: tuple[int, int] | None = None  # (gen, size) at the last collect
        self.start = 0
        self.finished = False  # the seen file is let go: its epoch is over
        self.done: Counter[str] = Counter()
        self.epoch: Counter[str] = Counter()
        self.rotations = 0

    @property
    def content(self) -> bytes | None:
        return None if self.gen is None else self.files[self.gen]

    def append(self, data: bytes) -> None:
        if self.gen is None:
            self.create()
        self.files[self.gen] += data

    def create(self) -> None:
        self.gen = len(self.files) + 1
        self.files[self.gen] = b""

    def truncated_size(self, percent: int) -> int | None:
        """A size the collector will see as a truncation, or None when there is none."""
        if not self.content:
            return None
        same_file = self.seen is not None and self.seen[0] == self.gen
        bound = self.seen[1] if same_file else len(self.content)
        return bound * percent // 100 if bound else None

    def truncate(self, size: int) -> None:
        self.files[self.gen] = self.files[self.gen][:size]

    def _finish(self) -> None:
        self.epoch = Counter(line_level(line) for line in
                             self.files[self.seen[0]][self.start:].split(b"\n") if line)
        self.done += self.epoch
        self.epoch, self.finished = Counter(), True

    def collect(self) -> None:
        if self.content is None:
            if self.seen is not None and not self.finished:
                self._finish()
            return
        size = len(self.content)
        if self.seen is None:
            self.start = size
        elif self.seen[0] != self.gen:
            if not self.finished:
                self._finish()
            self.rotations += 1
            self.start = 0
        elif size < self.seen[1]:
            self.rotations += 1
            self.done += self.epoch
            self.start = 0
        self.finished = False
        self.epoch = Counter(line_level(line) for line in
                             self.content[self.start:].split(b"\n")[:-1] if line)
        self.seen = (self.gen, size)

    def lines(self) -> dict[str, int]:
        total = self.done + self.epoch
        return {level: total[level] for level in (*LEVELS, "other")}


def _log_series(collector) -> dict[tuple[str, str, str], float]:
    return {(s.name, s.labels["log"], s.labels.get("level", "")): s.value
            for family in collector.collect() for s in family.samples}


@given(LOG_ROUNDS)
@example([([("append", b"a: x\n")], None), ([("append", _LOG_LINE % b"Error")], None),
          ([("append", b"\n" + _LOG_LINE % b"Info" + b"\n"), ("rotate", True),
            ("append", _LOG_LINE % b"Debug" + b"\nhalf")], 50),
          ([("append", b" line\n"), ("rotate", False)], None), ([("append", b"\n\n")], None),
          ([("append", b"x\n")], 0), ([], None)])
def test_logs_collector_counts_what_was_appended(scratch, rounds):
    """Size, rotations and lines by level after each collect are the model's."""
    with tempfile.TemporaryDirectory(dir=scratch) as d:
        root = Path(d)
        _write(root / connector_files.DAEMON_BINARY, b"")
        log = root / LOG_FILES["ampdaemon"]
        log.parent.mkdir(parents=True)
        exporter = exporter_for(root, "--collector.disable-defaults", "--collector.logs")
        [collector] = exporter.collectors
        model, rotated = _LogModel(), 0
        try:
            for changes, truncate in rounds:
                for op, arg in changes:
                    if op == "append":
                        with open(log, "ab") as handle:
                            handle.write(arg)
                        model.append(arg)
                        continue
                    if model.content is not None:  # rotate: renamed away
                        rotated += 1
                        os.rename(log, f"{log}.{rotated}")
                        model.gen = None
                    if arg:  # and a new file made
                        log.write_bytes(b"")
                        model.create()
                size = None if truncate is None else model.truncated_size(truncate)
                if size is not None:
                    os.truncate(log, size)
                    model.truncate(size)
                model.collect()
                series = _log_series(collector)
                assert not any(key[1] == "ampscansvc" for key in series)
                if model.content is None:
                    assert not series
                    continue
                assert series[("cisco_amp_log_size_bytes", "ampdaemon", "")] == len(
                    model.content)
                assert series[("cisco_amp_log_rotations_total", "ampdaemon", "")] == \
                    model.rotations
                assert {level: series[("cisco_amp_log_lines_total", "ampdaemon", level)]
                        for level in (*LEVELS, "other")} == model.lines()
        finally:
            exporter.close()


@given(st.one_of(st.binary(max_size=300), lines_of(["processes", "ctxt", " ", "12", "cpu",
                                                   "\u0663"]).map(str.encode)))
@example(b"processes " + b"9" * 5000)
def test_proc_stat_counts_or_a_value_error(scratch, data):
    _write(scratch / "proc/stat", data)
    only_raises(events.procfs_counts, ValueError, HostPaths(str(scratch)))


@given(st.integers(0, 2**62), st.one_of(st.none(), st.integers(0, 2**62)),
       st.lists(st.sampled_from(["cpu  1 2 3 4", "intr 1 2", "btime 1764040000",
                                 "procs_running 2"]), max_size=4))
def test_proc_stat_round_trips(scratch, forks, ctxt, other):
    lines = [*other, f"processes {forks}", *([f"ctxt {ctxt}"] if ctxt is not None else [])]
    _write(scratch / "proc/stat", ("\n".join(lines) + "\n").encode())
    assert events.procfs_counts(HostPaths(str(scratch))) == ({"process_fork": forks}, ctxt)


@given(st.one_of(st.binary(max_size=40), st.from_regex(rb"\A[0-9,\- \n]{0,20}\Z")))
@example(b"\xff\xfe")  # was a UnicodeDecodeError
@example(b"3-1")  # was a count of -1
def test_possible_cpus_is_a_count_or_a_value_error(scratch, data):
    _write(scratch / "possible", data)
    count = only_raises(bpfsys.possible_cpus, ValueError, str(scratch / "possible"))
    assert count is None or count >= 1


@given(st.lists(st.tuples(st.integers(0, 64), st.integers(0, 64)), min_size=1, max_size=6),
       st.sampled_from(["\n", ""]))
def test_possible_cpus_round_trips(scratch, ranges, end):
    parts, first, total = [], 0, 0
    for gap, width in ranges:  # increasing, disjoint ranges as the kernel prints them
        low, high = first + gap, first + gap + width
        parts.append(f"{low}-{high}" if width else str(low))
        total += width + 1
        first = high + 2
    _write(scratch / "possible", (",".join(parts) + end).encode())
    assert bpfsys.possible_cpus(str(scratch / "possible")) == total


# -- nesting ------------------------------------------------------------------------------

def test_deeply_nested_policy_is_read_without_recursion():
    # _find used to recurse per element: a policy.xml nested 5,000 deep raised
    # RecursionError on every scrape instead of reading the policy.
    depth = 5_000
    policy = ("<policy><name>P</name><config><agent><nfm><enable>0</enable></nfm></agent>"
              "</config></policy>")
    xml = "<a>" * depth + policy + "</a>" * depth
    assert connector_files.policy_name(xml) == ("P", None)
    assert connector_files.parse_policy(xml)["device_flow_correlation"] is False


def test_deeply_nested_global_xml_is_read_without_recursion():
    depth = 50_000
    xml = "<a>" * depth + "<agent><version>1.26.0.1182</version></agent>" + "</a>" * depth
    assert connector_files.parse_version(xml) == "1.26.0.1182"
    assert connector_files.parse_version("<agent>" * depth + "</agent>" * depth) is None


@pytest.mark.parametrize("text", ["[" * 100_000, "{a: " * 50_000, "- " * 100_000])
def test_deeply_nested_web_config_is_a_web_config_error(text):
    # PyYAML recurses per nesting level: a RecursionError escaped as a traceback.
    with pytest.raises(webconfig.WebConfigError, match=r"not valid YAML"):
        webconfig.parse(text)


# -- web config (exporter-toolkit YAML) and the Authorization header -----------------------

_TLS_KEYS = sorted(webconfig.TLS_FIELDS | {"cert", "key", "client_ca", "curve_preferences"})
_HASH_CHARS = "./" + string.ascii_letters + string.digits
WEB_WORDS = sorted({*webconfig.TOP_LEVEL, "rate_limit", *_TLS_KEYS, *webconfig.HTTP_FIELDS,
                    *webconfig.CLIENT_AUTH, *webconfig.CLIENT_AUTH_UNSUPPORTED,
                    *webconfig.VERSIONS, "TLS10", "TLS11", *webconfig.CIPHER_SUITES,
                    *webconfig.HEADERS, "nosniff", "deny", "sameorigin", "cert.pem",
                    "$2y$10$" + "a" * 53})
YAML_FRAGMENTS = [*WEB_WORDS, ":", ": ", "  ", "- ", "[", "]", "{", "}", ",", "'", '"', "#",
                  "&a ", "*a", "<<: ", "? ", "|", ">", "!!binary ", "!!int ", "!!set ", "~",
                  "null", "true", "0x1F", "1e3", ".inf", "2001-12-14", "2001-13-45",
                  "2001-12-14 21:59:43 +99:00", "12:30:00", "\t", "%YAML 1.1\n", "---", "..."]
# Scalars as a person types them, which YAML resolves to ints, timestamps, binary, ...
RAW_SCALARS = ["x", "''", "~", "[]", "{}", "[TLS12]", "{a: 1}", "0x1F", "0o17", "1_000", "1e3",
               "-.inf", ".nan", "2001-12-14", "2001-13-45", "2001-12-14 21:59:43 +99:00",
               "2001-12-14t21:59:43.10-05:00", "12:30:00", "!!binary aGk=", "!!binary x",
               "!!int x", "!!float x", "!!set {a}", "!!timestamp x", "!!python/name:os.system",
               "&a x", "*a", "[&b x, *b]", "<<: *a", "'q'", '"\\x00"', "|", "TLS13",
               "NoClientCert", "cert.pem"]
YAML_LINE = st.tuples(
    st.sampled_from(["", "", "", "  ", "    ", "- ", "  - "]),
    st.one_of(st.sampled_from(WEB_WORDS), st.text(max_size=4)),
    st.sampled_from([": ", ":", " : ", ""]),
    st.one_of(st.sampled_from(RAW_SCALARS), st.text(max_size=6))).map("".join)
YAML_TEXT = st.one_of(
    st.lists(st.tuples(st.one_of(st.sampled_from(WEB_WORDS), st.text(max_size=4)),
                       st.sampled_from(RAW_SCALARS)), min_size=1, max_size=4).map(
        lambda rows: "".join(f"{k}: {v}\n" for k, v in rows)),  # a flat mapping: valid YAML
    st.lists(YAML_LINE, max_size=8).map("\n".join))
YAML_KEY = st.one_of(st.sampled_from(WEB_WORDS), st.text(max_size=8), st.integers(),
                     st.booleans(), st.none())
YAML_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12),
              st.sampled_from(WEB_WORDS)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(YAML_KEY, inner, max_size=5)),
    max_leaves=12)
# Python values shaped like a web config, wrong in every possible place.
YAML_TREE = st.one_of(YAML_VALUE, st.fixed_dictionaries({}, optional={
    "tls_server_config": st.one_of(YAML_VALUE, st.dictionaries(st.sampled_from(_TLS_KEYS),
                                                               YAML_VALUE, max_size=8)),
    "http_server_config": st.one_of(YAML_VALUE, st.fixed_dictionaries({}, optional={
        "headers": st.one_of(YAML_VALUE, st.dictionaries(
            st.one_of(st.sampled_from(sorted(webconfig.HEADERS)), YAML_KEY), YAML_VALUE,
            max_size=4)),
        "http2": YAML_VALUE})),
    "basic_auth_users": st.one_of(YAML_VALUE, st.dictionaries(YAML_KEY, YAML_VALUE,
                                                              max_size=3)),
    "rate_limit": YAML_VALUE}))


def _dumped(style: tuple, value) -> str:
    flow, unicode = style
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=flow,
                          allow_unicode=unicode)


def _check_web_config(config: webconfig.WebConfig) -> None:
    """What a WebConfig that parse() accepted may hold."""
    if config.tls is not None:
        assert config.tls.cert_file and config.tls.key_file
        assert config.tls.client_auth_type in webconfig.CLIENT_AUTH
        assert webconfig.VERSIONS[config.tls.min_version] <= \
            webconfig.VERSIONS[config.tls.max_version]
        assert set(config.tls.cipher_suites) <= set(webconfig.CIPHER_SUITES)
    assert all(name in webconfig.HEADERS and "\n" not in value and "\r" not in value
               for name, value in config.headers)
    assert all(user and ":" not in user and webconfig.BCRYPT_HASH.match(hashed)
               for user, hashed in config.users.items())


@given(st.one_of(ANY_TEXT, lines_of(YAML_FRAGMENTS), YAML_TEXT))
@example("0: !!int")  # IndexError out of PyYAML
@example("0: !!int ;")  # ValueError out of PyYAML
@example("a: 2001-13-45")  # ValueError: month must be in 1..12
@example("a: !!timestamp x")  # AttributeError out of PyYAML
@example("a: " + "1" * 5000)  # ValueError: int() refuses > 4300 digits
def test_web_config_text_is_a_config_or_a_web_config_error(text):
    config = only_raises(webconfig.parse, webconfig.WebConfigError, text, "/etc/x")
    if config is not None:
        _check_web_config(config)


# Printable text: what a person writes in a config file (YAML quotes what it must; its line
# breaks, NEL and U+2028/9 included, are folded in some styles, so not those).
PRINTABLE = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1,
                    max_size=20)
BCRYPT = st.builds(lambda variant, cost, rest: f"$2{variant}${cost:02d}${rest}",
                   st.sampled_from("aby"), st.integers(4, 31),
                   st.text(_HASH_CHARS, min_size=53, max_size=53))
_ORDER = {"TLS12": 0, "TLS13": 1}
CASES = st.sampled_from([str, str.lower, str.upper, str.title])
VERSION_PAIRS = [(lo, hi) for lo in (None, "TLS12", "TLS13") for hi in (None, "TLS12", "TLS13")
                 if _ORDER[lo or "TLS12"] <= _ORDER[hi or "TLS13"]]


@st.composite
def web_configs(draw, tls_section: bool | None = None):
    """(value to dump as YAML, base directory, the WebConfig fields it must give)."""
    base = draw(st.sampled_from(["/etc/amp-exporter", ".", "conf dir/sub", "/"]))

    def path(name: str) -> str:  # relative names are read from the config file's directory
        return name if name.startswith("/") else f"{base.rstrip('/')}/{name}"

    config: dict = {}
    tls = None
    if tls_section or (tls_section is None and draw(st.booleans())):
        cert, key = draw(PRINTABLE), draw(PRINTABLE)
        section: dict = {"cert_file": cert, "key_file": key}
        auth = draw(st.sampled_from([None, "", *webconfig.CLIENT_AUTH]))
        if auth is not None:
            section["client_auth_type"] = auth
        auth = auth or "NoClientCert"
        ca, sans = None, ()
        if auth != "NoClientCert":
            ca = draw(PRINTABLE)
            section["client_ca_file"] = ca
        if auth == "RequireAndVerifyClientCert" and draw(st.booleans()):
            sans = tuple(draw(st.lists(PRINTABLE, max_size=3)))
            section["client_allowed_sans"] = list(sans)
        low, high = draw(st.sampled_from(VERSION_PAIRS))
        section.update({k: v for k, v in (("min_version", low), ("max_version", high))
                        if v is not None or draw(st.booleans())})  # absent, or null
        suites = draw(st.one_of(st.none(), st.lists(st.sampled_from(
            sorted(webconfig.CIPHER_SUITES)), max_size=4)))
        if suites is not None:
            section["cipher_suites"] = suites
        prefer = draw(st.one_of(st.none(), st.booleans()))
        if prefer is not None:
            section["prefer_server_cipher_suites"] = prefer
        config["tls_server_config"] = dict(draw(st.permutations(list(section.items()))))
        tls = webconfig.TLSConfig(
            cert_file=path(cert), key_file=path(key), client_auth_type=auth,
            client_ca_file=ca and path(ca), client_allowed_sans=sans,
            min_version=low or "TLS12", max_version=high or "TLS13",
            cipher_suites=tuple(suites or ()), prefer_server_cipher_suites=prefer is not False)
    elif draw(st.booleans()):
        config["tls_server_config"] = draw(st.sampled_from([None, {}]))
    headers: list[tuple[str, str]] = []
    http2 = None
    if draw(st.booleans()):
        http: dict = {}
        for name in draw(st.lists(st.sampled_from(sorted(webconfig.HEADERS)), unique=True)):
            choices = webconfig.HEADERS[name]
            value = draw(PRINTABLE if choices is None else
                         st.sampled_from(sorted(choices)).map(draw(CASES)))
            http.setdefault("headers", {})[draw(CASES)(name)] = value
            headers.append((name, value))
        http2 = draw(st.one_of(st.none(), st.booleans()))
        if http2 is not None:
            http["http2"] = http2
        config["http_server_config"] = http or None
    users = draw(st.dictionaries(PRINTABLE.filter(lambda u: ":" not in u), BCRYPT, max_size=3))
    if users or draw(st.booleans()):
        config["basic_auth_users"] = users or None
    config = dict(draw(st.permutations(list(config.items()))))
    return config, base, (tls, tuple(headers), users, http2 is True)


# Where a field may be changed in a valid config, and the field names each place knows.
_WEB_PLACES = {(): sorted(webconfig.TOP_LEVEL | {"rate_limit"}),
               ("tls_server_config",): sorted(webconfig.TLS_FIELDS),
               ("http_server_config",): sorted(webconfig.HTTP_FIELDS),
               ("http_server_config", "headers"): sorted(webconfig.HEADERS),
               ("basic_auth_users",): ["prometheus"]}


@st.composite
def mutated_web_configs(draw):
    """A valid config with one to three fields removed, or set to any value: the checks
    deep inside each section are reached, not only the first one."""
    config = draw(web_configs(tls_section=draw(st.integers(0, 3)) > 0))[0]
    for _ in range(draw(st.integers(1, 3))):
        # tls_server_config has the most checks: it is changed most often
        place = draw(st.sampled_from([*sorted(_WEB_PLACES), *[("tls_server_config",)] * 3]))
        node = config
        for key in place:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if node and draw(st.sampled_from(["remove", "set", "set", "set"])) == "remove":
            del node[draw(st.sampled_from(list(node)))]
        else:
            fields = st.sampled_from(_WEB_PLACES[place])
            key = draw(st.one_of(fields, fields, fields, YAML_KEY))  # mostly a known field
            node[key] = draw(st.one_of(  # any value, and often a wrong type
                YAML_VALUE, st.lists(YAML_VALUE, min_size=1, max_size=3),
                st.dictionaries(YAML_KEY, YAML_VALUE, min_size=1, max_size=3)))
    return config


@given(st.one_of(YAML_TREE, mutated_web_configs()),
       st.tuples(st.sampled_from([None, True, False]), st.booleans()))
@example({"tls_server_config": {"cert_file": "0", "key_file": "0", "client_auth_type": [None]}},
         (None, False))  # TypeError: unhashable type: 'list'
@example({"tls_server_config": {"cert_file": "0", "key_file": "0", "max_version": [None]}},
         (None, False))
def test_web_config_structures_are_a_config_or_a_web_config_error(value, style):
    config = only_raises(webconfig.parse, webconfig.WebConfigError, _dumped(style, value),
                         "/etc/x")
    if config is not None:
        _check_web_config(config)


@given(web_configs(), st.tuples(st.sampled_from([None, True, False]), st.booleans()))
def test_web_config_round_trips(case, style):
    value, base, (tls, headers, users, warned) = case
    config = webconfig.parse(_dumped(style, value), base)
    assert config.tls == tls
    assert config.headers == headers
    assert config.users == users
    assert len(config.warnings) == warned


AUTH_FRAGMENTS = ["Basic", "basic", "BASIC", "Bearer", " ", "\t", "dXNlcjpwYXNz", "dXNlcg==",
                  "Og==", "=", "==", ":", "/+", "w6k6w6k=", "\u00e9", "\x00", "\r\n"]


@given(st.one_of(
    st.none(), ANY_TEXT,
    st.lists(st.one_of(st.sampled_from(AUTH_FRAGMENTS), st.text(max_size=3)),
             max_size=8).map("".join),
    st.tuples(st.sampled_from(["Basic ", "basic  ", "Basic\t"]), st.binary(max_size=30),
              st.sampled_from(["", " ", "\u00e9", "=", "\x00"])).map(
        lambda t: t[0] + base64.b64encode(t[1]).decode() + t[2])))
@example("BASIC \x80")  # ValueError from b64decode: a non-ASCII token
def test_authorization_header_is_credentials_or_none(header):
    creds = webconfig.BasicAuth.credentials(header)
    if creds is not None:
        user, password = creds
        assert isinstance(user, str) and isinstance(password, str) and ":" not in user
        assert header.strip()[:6].lower() == "basic "


CREDENTIAL = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=":"),
               max_size=20), CREDENTIAL, st.sampled_from(["Basic", "basic", "BASIC", "bAsIc"]),
       st.text(" \t", max_size=3), st.text(" \t", max_size=3), st.text(" \t", max_size=3))
def test_authorization_header_round_trips(user, password, scheme, lead, gap, trail):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert webconfig.BasicAuth.credentials(f"{lead}{scheme} {gap}{token}{trail}") == (
        user, password)
    assert webconfig.BasicAuth.credentials(f"Bearer {token}") is None
    no_colon = base64.b64encode(user.encode()).decode()  # no ':': not user:password
    assert webconfig.BasicAuth.credentials(f"{scheme} {no_colon}") is None


# -- sock_diag ------------------------------------------------------------------------------

@st.composite
def diag_datagrams(draw):
    """(datagram, {inode: state}, done) made of well-formed inet_diag messages."""
    expected, data = {}, b""
    for _ in range(draw(st.integers(0, 20))):
        state, inode = draw(st.integers(1, 12)), draw(st.integers(1, 2**32 - 1))
        body = sockdiag._MSG.pack(2, state, 0, 0, 0, 0, 0, 0, inode)
        body += draw(st.binary(max_size=12))  # attributes we do not read
        length = sockdiag._NLMSGHDR.size + len(body)
        data += sockdiag._NLMSGHDR.pack(length, sockdiag.SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body
        data += b"\0" * (-length % 4)
        expected[inode] = state
    done = draw(st.booleans())
    if done:
        data += sockdiag._NLMSGHDR.pack(20, sockdiag.NLMSG_DONE, 2, 1, 0) + b"\0" * 4
    return data, expected, done


@given(st.binary(max_size=400))
def test_sockdiag_datagram_is_states_or_a_sockdiag_error(data):
    found: dict = {}
    only_raises(sockdiag.parse_dump, sockdiag.SockDiagError, data, found)
    assert all(isinstance(k, int) and 0 <= v.state < 256 for k, v in found.items())


@given(diag_datagrams())
def test_sockdiag_datagram_round_trips(case):
    data, expected, done = case
    found: dict = {}
    assert sockdiag.parse_dump(data, found) is done
    assert {inode: s.state for inode, s in found.items()} == expected


# -- command-line numbers -----------------------------------------------------------------
# Every numeric flag: (flag, Settings-side name, whether 0 is allowed, int only).
NUMERIC_FLAGS = [
    ("--ampcli.timeout", "ampcli_timeout", False, False),
    ("--ampcli.cache", "ampcli_cache", True, False),
    ("--check.scan-restarts", "scan_restarts", False, True),
    ("--check.scan-restart-window", "scan_window", False, False),
    ("--events.load-timeout", "events_load_timeout", False, False),
    ("--events.window", "events_window", False, False),
    ("--events.capacity", "events_capacity", False, False),
    ("--events.pressure-threshold", "events_threshold", False, False),
    ("--events.pressure-for", "events_for", True, False),
]


def _parse_flag(flag: str, value: str):
    """The parsed namespace, or None when argparse refused the value (it exits 2)."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return build_parser().parse_args(["textfile", "--output", "-", f"{flag}={value}"])
        except SystemExit as exc:
            assert exc.code == 2
            return None


def test_numeric_flags_are_all_listed():
    flags = {a for action in build_parser()._subparsers._group_actions[0].choices[
        "textfile"]._actions for a in action.option_strings
        if action.type is not None and action.type not in (str,)}
    assert {f for f, *_ in NUMERIC_FLAGS} | {"--check.min-available-memory"} == flags


@example("nan", 0)
@example("inf", 1)
@example("-0", 0)
@example("1e400", 4)
@example(" 7 ", 2)
@given(st.one_of(st.text(max_size=12), st.floats().map(repr), st.integers().map(str)),
       st.integers(0, len(NUMERIC_FLAGS) - 1))
def test_numeric_flag_is_a_finite_number_or_exit_2(value, which):
    # Found and fixed: nan and inf were taken (a timeout of nan, a cache of inf), and
    # --ampcli.cache and --events.pressure-for took negative numbers.
    flag, dest, zero_ok, int_only = NUMERIC_FLAGS[which]
    args = _parse_flag(flag, value)
    if args is not None:
        got = getattr(args, dest)
        assert isinstance(got, int if int_only else float)
        assert math.isfinite(got) and (got > 0 or (zero_ok and got == 0)), (flag, value, got)


@given(st.integers(0, len(NUMERIC_FLAGS) - 1), st.floats(0, 1e9), st.integers(1, 10**6))
def test_numeric_flag_round_trips(which, number, whole):
    flag, dest, zero_ok, int_only = NUMERIC_FLAGS[which]
    value = whole if int_only else (number if number > 0 or zero_ok else whole)
    assert getattr(_parse_flag(flag, repr(value)), dest) == value


@example("1e400G")
@example("infG")
@example("-5M")
@example("nan")
@given(st.one_of(st.text(max_size=12),
                 st.tuples(st.floats().map(repr), st.sampled_from(["", "k", "M", "GiB", "kb"]))
                 .map("".join)))
def test_size_flag_is_bytes_or_exit_2(value):
    # Found and fixed: '1e400G' and 'infG' ended in an OverflowError traceback; negative
    # sizes were taken.
    args = _parse_flag("--check.min-available-memory", value)
    if args is not None:
        assert isinstance(args.min_memory, int) and 0 <= args.min_memory <= 1 << 62


@given(st.integers(0, 2**40), st.sampled_from([("", 1), ("k", 1 << 10), ("KiB", 1 << 10),
                                               ("M", 1 << 20), ("MiB", 1 << 20),
                                               ("g", 1 << 30), ("GB", 1 << 30)]))
def test_size_flag_round_trips(number, unit):
    suffix, scale = unit
    if number * scale > 1 << 62:
        number = 1
    args = _parse_flag("--check.min-available-memory", f"{number}{suffix}")
    assert args.min_memory == number * scale


@given(st.text(max_size=30))
def test_listen_address_is_host_port_or_a_value_error(text):
    try:
        host, port = parse_listen_address(text)
    except ValueError:
        return
    assert 0 <= port <= 65535 and isinstance(host, str)


@given(st.sampled_from(["", "127.0.0.1", "0.0.0.0", "localhost", "[::1]", "[::]",
                        "host.example"]), st.integers(0, 65535))
def test_listen_address_round_trips(host, port):
    assert parse_listen_address(f"{host}:{port}") == (host.strip("[]"), port)
