"""One place for what the generated alerts and dashboards assume about a deployment.

Change a selector or a threshold here, then run `python -m amp_exporter.monitoring`:
the rules, the Alertmanager example, the dashboards, the runbooks and the promtool tests
are regenerated from it and from the fault catalog (amp_exporter/catalog.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# Every alert name starts with this (CamelCase, as the monitoring mixins do).
ALERT_PREFIX = "CiscoAmp"
RUNBOOK_URL_BASE = "https://github.com/amp-exporter/amp-exporter/blob/main/docs/runbooks/"


DEPLOYMENTS = ("exporter", "textfile")


@dataclass(frozen=True)
class Config:
    # How Prometheus gets amp-exporter's series:
    #   exporter: it scrapes `amp-exporter serve` as a job of its own;
    #   textfile: node_exporter serves the file `amp-exporter textfile` writes, so the series
    #             carry node_exporter's job, and its `up` says whether they can be read.
    # "Exporter down" and "exporter absent" mean different things in each (alerts.py).
    deployment: str = "exporter"
    # The label matcher every rule selects the exporter's series with, as the monitoring
    # mixins' selectors: add target labels to narrow it (e.g. 'job="node",env="prod"').
    selector: str = 'job="amp-exporter"'
    # The job dashboards offer first in their $job variable.
    job: str = "amp-exporter"
    runbook_url_base: str = RUNBOOK_URL_BASE
    # A target label that tells clusters (or sites, regions) apart, as the mixins'
    # clusterLabel: the recording rules keep it, the alerts name it, and the dashboards get
    # a variable of it that every query selects. None: one Prometheus, one fleet.
    cluster_label: Optional[str] = None

    # -- thresholds and durations of the alerts that are not a connector fault ----------
    exporter_down_for: str = "5m"
    # absent(up{job=...}): nothing of the job is scraped at all (all targets gone).
    target_absent_for: str = "15m"
    collector_failing_for: str = "15m"
    # A scraped host without the connector: someone expected one there.
    not_installed_for: str = "1h"
    disconnected_for: str = "30m"
    degraded_for: str = "15m"
    # Early warning before fault 6: this many scan service restarts within the window.
    scan_restarts: int = 3
    scan_restart_window: str = "10m"
    # Early warning before fault 18: event pressure (rate / capacity) above this ratio.
    event_pressure_ratio: float = 0.8
    event_pressure_for: str = "10m"
    unknown_fault_for: str = "15m"
    # An installed connector whose daemon is gone protects nothing: page soon, but not
    # during a restart or a package upgrade (they take well under a minute).
    daemon_not_running_for: str = "3m"
    # A daemon that runs but does not answer ampcli may be busy (start-up, a definitions
    # update): page when it stays silent this long.
    not_answering_for: str = "10m"
    # Virus definitions: the newest database (ClamAV's daily.cvd/.cld, which Cisco's cloud
    # renews several times a day; main.cvd is rebuilt only every few months, so the alert
    # takes the newest file, never each one) is older than this. 3 days rides out a long
    # weekend offline or a slow proxy; by then the host has missed some dozen updates, so
    # warn. After 7 days it misses a week of signatures of what spreads now: page.
    definitions_stale_warning: str = "3d"
    definitions_stale_critical: str = "7d"
    # A definitions update replaces the files: ride out a moment with the old main.cvd alone.
    definitions_stale_for: str = "1h"
    # textfile: the file is older than this (the shipped timer writes it every minute).
    textfile_stale_after: str = "10m"
    # textfile: how far back a host counts as one that served amp-exporter's series.
    textfile_lookback: str = "1d"

    def __post_init__(self) -> None:
        if self.deployment not in DEPLOYMENTS:
            raise ValueError(f"deployment must be one of {DEPLOYMENTS}, not {self.deployment!r}")
        if self.cluster_label is not None and not re.fullmatch(
                r"[a-zA-Z_][a-zA-Z0-9_]*", self.cluster_label):
            raise ValueError(f"--cluster-label {self.cluster_label!r}: not a label name")


DEFAULT = Config()
# node_exporter's textfile collector, scraped as Debian's and the usual Prometheus
# configurations name it (job "node"); use your own job or target labels in the selector.
TEXTFILE = Config(deployment="textfile", selector='job="node"', job="node")

# Dashboard UIDs never change (links and bookmarks use them).
FLEET_DASHBOARD_UID = "amp-exporter-fleet"
HOST_DASHBOARD_UID = "amp-exporter-host"
