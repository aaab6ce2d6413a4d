"""Alerts, recording rules, dashboards and runbooks for amp-exporter, generated from the
fault catalog (amp_exporter/catalog.py) and config.py. `python -m amp_exporter.monitoring`
writes them; `--check` fails when the committed files are stale."""
