"""Shared shape of the root-cause collectors.

A cause collector owns some fault IDs and checks every cause the catalog lists for
them. It always exports every one of those causes (0 or 1) when its checks could
run (a check that cannot run this time leaves its cause out: UNCHECKED), and all 0 on
a host without the connector: nothing of it can be faulty.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from amp_exporter.catalog import FAULTS_BY_ID
from amp_exporter.exposition import Family
from amp_exporter.host import connector_files
from amp_exporter.registry import Collector, gauge

# {(fault_id, cause): what was found, in words for `amp-exporter check`; UNCHECKED for a
# cause whose check could not run this time: its series is left out, never 0}
Findings = dict[tuple[int, str], Optional[str]]
UNCHECKED = None

CAUSE = gauge("", "cisco_amp_fault_cause",
              "1 when the exporter's own check finds this root cause of the fault on this host "
              "(causes: docs/faults.md).", ("fault_id", "cause"))


class CauseCollector(Collector):
    fault_ids: tuple[int, ...] = ()

    def check(self) -> tuple[Findings, list[Family]]:
        """Run the checks on an installed connector: (findings, evidence families)."""
        raise NotImplementedError

    def evidence_without_connector(self) -> list[Family]:
        """Evidence that stays meaningful on a host without the connector."""
        return []

    def findings(self) -> tuple[Findings, list[Family]]:
        if not connector_files.installed(self.paths):
            return {}, self.evidence_without_connector()
        findings, evidence = self.check()
        expected = {(fid, c.name) for fid in self.fault_ids for c in FAULTS_BY_ID[fid].causes}
        unknown = set(findings) - expected
        if unknown:
            raise AssertionError(f"{self.name}: causes not in the catalog: {sorted(unknown)}")
        # The catalog's rule for a cause of a fault that is not raised (catalog.Cause): a
        # momentary finding is none.
        reported = self.shared.reported_faults()
        momentary = {(fid, c.name) for fid in self.fault_ids for c in FAULTS_BY_ID[fid].causes
                     if c.momentary and fid not in reported}
        return {k: v for k, v in findings.items() if k not in momentary}, evidence

    def collect(self) -> Iterable[Family]:
        findings, evidence = self.findings()
        family = CAUSE.family()
        for fid in self.fault_ids:
            for cause in FAULTS_BY_ID[fid].causes:
                key = (fid, cause.name)
                if key in findings and findings[key] is UNCHECKED:
                    continue
                family.add_metric([str(fid), cause.name], 1.0 if key in findings else 0.0)
        return [*evidence, family]
