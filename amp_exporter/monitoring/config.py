"""One place for what the generated alerts and dashboards assume about a deployment.

Change a selector or a threshold here, then run `python -m amp_exporter.monitoring`:
the rules, the Alertmanager example, the dashboards, the runbooks and the promtool tests
are regenerated from it and from the fault catalog (amp_exporter/catalog.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# Every alert name starts with this (CamelCase, as the monitoring mixins do).
ALERT_PREFIX = "CiscoAmp"
RUNBOOK_URL_BASE = "https://github.com/amp-exporter/amp-exporter/blob/main/docs/runbooks/"


@dataclass(frozen=True)
class Config:
    # The Prometheus job that scrapes amp-exporter. Alerts and recording rules select on
    # it; dashboards offer it as the $job variable (this is only the variable's default).
    job: str = "amp-exporter"
    runbook_url_base: str = RUNBOOK_URL_BASE

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

    @property
    def selector(self) -> str:
        """The label matcher every rule uses, e.g. job="amp-exporter"."""
        return f'job="{self.job}"'


DEFAULT = Config()

# Dashboard UIDs never change (links and bookmarks use them).
FLEET_DASHBOARD_UID = "amp-exporter-fleet"
HOST_DASHBOARD_UID = "amp-exporter-host"
