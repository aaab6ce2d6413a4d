"""Our families and text-format writer against prometheus_client's, byte for byte: every
example host's scrape, escaping, odd values, and the float format on any float."""

from __future__ import annotations

import math

import pytest
from conftest import builder
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString

from amp_exporter.cli import build_parser, make_exporter
from amp_exporter.exposition import LINES_KEPT, Family, Lines, go_float, render
from amp_exporter.registry import Desc


class Fixed:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return list(self.families)


def as_prometheus_client(family: Family):
    """The same family in prometheus_client's model (its name, help, labels and rows)."""
    cls = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
    theirs = cls(family.name, family.documentation, labels=list(family.lines.label_names))
    for values, value in family.rows:
        theirs.add_metric(list(values), value)
    return theirs


def reference(families) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed([as_prometheus_client(f) for f in families]))
    return generate_latest(registry)


def scrape_of(root) -> list[Family]:
    args = build_parser().parse_args(["textfile", "--output", "-", "--path.rootfs", str(root)])
    exporter = make_exporter(args)
    try:
        return list(exporter.collect())
    finally:
        exporter.close()


@pytest.mark.parametrize("name", sorted(builder.HOSTS))
def test_same_bytes_as_prometheus_client(hosts, name):
    families = scrape_of(hosts[name])
    assert render(families) == reference(families)
    # A second scrape is written from the texts the first one left in each Desc.
    again = scrape_of(hosts[name])
    assert render(again) == reference(again)


def test_escaping_and_odd_values():
    g = Desc("x_info", "gauge", 'help with \\ and\nnewline "quoted"', ("b", "a")).family()
    g.add_metric(['back\\slash "q"\nline', "ünïcode"], 1)
    g.add_metric(["nan", ""], float("nan"))
    g.add_metric(["inf", "-"], float("inf"))
    g.add_metric(["-inf", "-"], float("-inf"))
    g.add_metric(["big", "x"], 1.5e300)
    g.add_metric(["neg zero", "x"], -0.0)
    c = Desc("events", "counter", "count", ("event",)).family()
    c.add_metric(["e"], 12345678901234)
    none = Desc("no_labels", "gauge", "").family()
    none.add_metric([], 3)
    assert render([g, c, none]) == reference([g, c, none])
    assert b'x_info{a="\xc3\xbcn\xc3\xafcode",b="back\\\\slash \\"q\\"\\nline"} 1.0\n' in \
        render([g])
    assert render([c]).endswith(b"events_total{event=\"e\"} 1.2345678901234e+13\n")


def test_wrong_number_of_label_values_is_refused():
    family = Desc("x", "gauge", "h", ("a", "b")).family()
    with pytest.raises(ValueError, match="2 label values expected, got 1"):
        family.add_metric(["only one"], 1)


def test_samples_name_each_label():
    family = Desc("restarts", "counter", "h", ("process",)).family()
    family.add_metric(["ampscansvc"], 2)
    (sample,) = family.samples
    assert (sample.name, sample.labels, sample.value) == (
        "restarts_total", {"process": "ampscansvc"}, 2)


def test_kept_texts_stay_bounded():
    lines = Lines("busy", "gauge", "h", ("command",))
    for i in range(LINES_KEPT * 3):
        assert lines.prefix((f"cmd{i}",)) == f'busy{{command="cmd{i}"}} '
    assert len(lines._prefixes) <= LINES_KEPT


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**20, 10**20))
def test_float_format_is_prometheus_clients(value):
    assert go_float(value) == floatToGoString(value)


def test_float_format_known_values():
    assert [go_float(v) for v in (0.0, 1, 1234567.0, 1e21, 1e16, math.nan, -2.5e-7)] == [
        "0.0", "1.0", "1.234567e+06", "1e+21", "1e+16", "NaN", "-2.5e-07"]
