"""Metric families and the Prometheus text format (0.0.4) they are written in.

The exporter's own model rather than prometheus_client's: importing prometheus_client
costs ~24 ms of start-up and ~3 MiB, and makes `ssl`, `http.server` and `urllib` load
(another ~7 MiB) in every process, the `textfile` run and a server without TLS
included; and its writer validates and escapes every sample's names, which are fixed
at declaration here (registry.Desc, checked by promtool). A family keeps its rows as
(label values, value); the text of each row's name and labels is built once per label
values and kept by its Desc (`Lines`), so a scrape mostly joins strings it already has.
tests/test_exposition.py checks that the output is byte for byte what
prometheus_client.generate_latest writes for the same families.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Optional

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Label-value sets whose text a Desc keeps; past this (label values that keep changing,
# such as the busiest commands) it starts again rather than grow without bound.
LINES_KEPT = 2048


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _label_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def go_float(value: float) -> str:
    """VALUE as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it, the form Prometheus's
    own clients use: +Inf, -Inf, NaN, and exponents from 1e+21 down as Go switches to
    them (Python's repr switches at 1e+16)."""
    value = float(value)
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    point = text.find(".")
    if value > 0 and point > 6:  # repr gave 7+ integer digits: Go writes them as d.ddde+XX
        digits = (text[:point] + text[point + 1:]).rstrip("0")
        mantissa = (digits[0] + "." + digits[1:]).rstrip(".")
        return f"{mantissa}e+{point - 1:02d}"
    return text


class Lines:
    """What a Desc keeps between scrapes: its HELP/TYPE header and the text of each row's
    name and labels, by label values."""

    __slots__ = ("_order", "_prefixes", "header", "label_names", "sample_name")

    def __init__(self, name: str, kind: str, documentation: str,
                 label_names: Sequence[str]) -> None:
        self.sample_name = name + "_total" if kind == "counter" else name
        self.header = (f"# HELP {self.sample_name} {_help(documentation)}\n"
                       f"# TYPE {self.sample_name} {kind}\n")
        self.label_names = tuple(label_names)
        # The text format has labels sorted by name, as prometheus_client writes them.
        self._order = sorted(range(len(self.label_names)), key=self.label_names.__getitem__)
        self._prefixes: dict[tuple[str, ...], str] = {}

    def prefix(self, values: tuple[str, ...]) -> str:
        """`name{a="x",b="y"} ` for these label values."""
        text = self._prefixes.get(values)
        if text is None:
            if len(values) != len(self.label_names):
                raise ValueError(f"{self.sample_name}: {len(self.label_names)} label values "
                                 f"expected, got {len(values)}")
            if values:
                labels = ",".join(f'{self.label_names[i]}="{_label_value(values[i])}"'
                                  for i in self._order)
                text = f"{self.sample_name}{{{labels}}} "
            else:
                text = self.sample_name + " "
            if len(self._prefixes) >= LINES_KEPT:
                self._prefixes.clear()
            self._prefixes[values] = text
        return text


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


class Family:
    """One metric family in one scrape: rows of (label values, value)."""

    __slots__ = ("documentation", "lines", "name", "rows", "type")

    def __init__(self, name: str, kind: str, documentation: str,
                 lines: Optional[Lines] = None, label_names: Sequence[str] = ()) -> None:
        self.name = name  # counters without _total, as Desc declares them
        self.type = kind  # "gauge" or "counter"
        self.documentation = documentation
        self.lines = lines or Lines(name, kind, documentation, label_names)
        self.rows: list[tuple[tuple[str, ...], float]] = []

    def add_metric(self, label_values: Sequence[str], value: float) -> None:
        values = tuple(label_values)
        if len(values) != len(self.lines.label_names):
            raise ValueError(f"{self.name}: {len(self.lines.label_names)} label values "
                             f"expected, got {len(values)}")
        self.rows.append((values, value))

    def extend(self, other: Family) -> None:
        """OTHER's rows too (two collectors adding to one family: one HELP line)."""
        self.rows.extend(other.rows)

    @property
    def samples(self) -> list[Sample]:
        """The rows as named samples (`check` and the tests read them)."""
        names = self.lines.label_names
        return [Sample(self.lines.sample_name, dict(zip(names, values)), value)
                for values, value in self.rows]


def render(families: Iterable[Family]) -> bytes:
    out: list[str] = []
    add = out.append
    for family in families:
        lines = family.lines
        add(lines.header)
        prefix = lines.prefix
        for values, value in family.rows:
            add(prefix(values))
            add(go_float(value))
            add("\n")
    return "".join(out).encode("utf-8")
