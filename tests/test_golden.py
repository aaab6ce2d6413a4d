"""End-to-end golden test: the whole exposition of every example host, through the real
command line, equals a checked-in file (volatile series dropped), and promtool accepts it.

Regenerate after an intended change, then review the diff like code:
    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import builder, have, scrape_text

GOLDEN = Path(__file__).parent / "golden"
# Series whose values depend on the machine or the moment, not on the host tree.
VOLATILE = ("amp_exporter_scrape_collector_duration_seconds",
            "amp_exporter_ampcli_duration_seconds", "amp_exporter_build_info",
            "amp_exporter_textfile_write_timestamp_seconds")
# Flags an example host needs to be scraped quickly: its ampcli never answers, and the
# default 5 s deadline would only make the test slower (the outcome is the same).
HOST_FLAGS = {"ampcli-silent": ("--ampcli.timeout", "1")}


def stable(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines()
                   if not any(line.split("{")[0].split(" ")[0] == name or
                              line.startswith(f"# HELP {name} ") or
                              line.startswith(f"# TYPE {name} ") for name in VOLATILE))


@pytest.mark.parametrize("name", sorted(builder.HOSTS))
def test_golden_exposition(hosts, name):
    got = stable(scrape_text(hosts[name], *HOST_FLAGS.get(name, ())))
    path = GOLDEN / f"{name}.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"no golden file for {name}: run with UPDATE_GOLDEN=1"
    assert got == path.read_text(), f"{name}: exposition changed (UPDATE_GOLDEN=1 to accept)"


@pytest.mark.skipif(not have("promtool"), reason="promtool (Debian package prometheus) missing")
@pytest.mark.parametrize("name", sorted(builder.HOSTS))
def test_promtool_accepts_the_exposition(hosts, name):
    text = scrape_text(hosts[name], *HOST_FLAGS.get(name, ()))
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr)
