"""Our text-format writer equals prometheus_client's, byte for byte, on every example host."""

from __future__ import annotations

import pytest
from conftest import builder
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from amp_exporter.cli import build_parser, make_exporter
from amp_exporter.exposition import render


class Fixed:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return list(self.families)


def reference(families) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(families))
    return generate_latest(registry)


@pytest.mark.parametrize("name", sorted(builder.HOSTS))
def test_same_bytes_as_prometheus_client(hosts, name):
    args = build_parser().parse_args(["textfile", "--output", "-", "--path.rootfs",
                                      str(hosts[name])])
    exporter = make_exporter(args)
    try:
        families = list(exporter.collect())
    finally:
        exporter.close()
    assert render(families) == reference(families)


def test_escaping_and_odd_values():
    g = GaugeMetricFamily("x_info", 'help with \\ and\nnewline "quoted"', labels=["a", "b"])
    g.add_metric(['back\\slash "q"\nline', "ünïcode"], 1)
    g.add_metric(["nan", ""], float("nan"))
    g.add_metric(["inf", "-"], float("inf"))
    g.add_metric(["big", "x"], 1.5e300)
    c = CounterMetricFamily("events", "count", labels=["event"])
    c.add_metric(["e"], 12345678901234)
    assert render([g, c]) == reference([g, c])
