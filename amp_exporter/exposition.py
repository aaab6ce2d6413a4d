"""Prometheus text format (0.0.4) for our own families, without prometheus_client's
per-sample name validation and escaping machinery, which cost a third of a scrape.

Our metric and label names are fixed at declaration (registry.Desc, tested by promtool),
so only label values and help texts need escaping here. tests/test_exposition.py checks
that the output is byte-for-byte what prometheus_client.generate_latest writes.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _label_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render(families: Iterable[Metric]) -> bytes:
    out: list[str] = []
    for family in families:
        name = family.name
        kind = family.type
        if kind == "counter":
            name += "_total"
        elif kind in ("info", "stateset"):
            kind = "gauge"
        elif kind == "unknown":
            kind = "untyped"
        out.append(f"# HELP {name} {_help(family.documentation)}\n# TYPE {name} {kind}\n")
        for s in family.samples:
            if s.labels:
                labels = ",".join(f'{k}="{_label_value(v)}"'
                                  for k, v in sorted(s.labels.items()))
                line = f"{s.name}{{{labels}}} {floatToGoString(s.value)}"
            else:
                line = f"{s.name} {floatToGoString(s.value)}"
            if s.timestamp is not None:
                line += f" {int(float(s.timestamp) * 1000)}"
            out.append(line + "\n")
    return "".join(out).encode("utf-8")
