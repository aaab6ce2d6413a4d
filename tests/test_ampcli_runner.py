"""Running a real (stand-in) ampcli process: timeouts, garbage, floods, strays, caching."""

import os
import subprocess
import time

import pytest
from conftest import concurrently
from test_restarts import exporter_for, scrape

from amp_exporter.ampcli import OUTPUT_LIMIT, AmpcliRunner

STATUS = "Status: Connected\\nMode: Normal\\nFaults: None\\n"


def script(tmp_path, body, name="ampcli"):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def pgrep(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return out.stdout.split()


def test_answers_and_parses(tmp_path):
    r = AmpcliRunner(script(tmp_path, f'[ "$1" = status ] && printf "{STATUS}"'), 5, 0)
    result = r.status()
    assert result.ok and result.status.connected and result.exit_code == 0


def test_hang_is_killed_at_the_deadline_with_its_children(tmp_path):
    marker = f"amp-hang-{os.getpid()}-{time.monotonic_ns()}"
    # The child keeps stdout open and would outlive a plain kill of ampcli.
    path = script(tmp_path, f'sleep 300 & exec sleep 301 # {marker}')
    r = AmpcliRunner(path, 0.5, 0)
    start = time.monotonic()
    result = r.status()
    assert time.monotonic() - start < 1.5
    assert not result.ok and result.error == "timeout"
    time.sleep(0.2)
    assert pgrep(marker) == []


def test_children_left_behind_after_a_good_answer_are_killed(tmp_path):
    marker = f"amp-stray-{os.getpid()}-{time.monotonic_ns()}"
    # The stray closes stdout, so ampcli's answer arrives; it must not survive it.
    path = script(tmp_path, f'sh -c "sleep 300 # {marker}" >/dev/null 2>&1 &\nprintf "{STATUS}"')
    r = AmpcliRunner(path, 5, 0)
    assert r.status().ok
    time.sleep(0.2)
    assert pgrep(marker) == []


def test_nonzero_exit(tmp_path):
    result = AmpcliRunner(script(tmp_path, 'echo "Error: daemon not running"; exit 3'), 5,
                          0).status()
    assert result.error == "exit_status" and result.exit_code == 3


def test_binary_garbage_is_a_parse_error(tmp_path):
    result = AmpcliRunner(script(tmp_path, "head -c 4000 /dev/urandom"), 5, 0).status()
    assert result.error == "parse"


def test_megabytes_of_output_are_cut_off(tmp_path):
    result = AmpcliRunner(script(tmp_path, "yes 'Status: Connected'"), 5, 0).status()
    assert result.error == "parse" and str(OUTPUT_LIMIT) in result.message


def test_missing(tmp_path):
    assert AmpcliRunner(str(tmp_path / "nope"), 5, 0).status().error == "missing"


def test_not_executable(tmp_path):
    # execve() needs an x bit even for root, so this holds for every user.
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    assert AmpcliRunner(str(plain), 5, 0).status().error == "permission"


@pytest.mark.parametrize("cache", [5, 0])
def test_concurrent_callers_share_one_run(tmp_path, cache):
    # With no cache too: a run that finishes after a caller asked was in flight for it.
    path = script(tmp_path, f'sleep 0.3; printf "{STATUS}"')
    r = AmpcliRunner(path, 5, cache)
    results = concurrently(r.status, 20)
    assert r.runs == 1 and len(results) == 20 and all(x.ok for x in results)


def test_cache_expires(tmp_path):
    r = AmpcliRunner(script(tmp_path, f'printf "{STATUS}"'), 5, 0.1)
    r.status()
    r.status()
    assert r.runs == 1
    time.sleep(0.15)
    r.status()
    assert r.runs == 2


def test_one_scrape_asks_ampcli_once(hosts):
    # Several collectors use the connector's answer: one scrape, one run, one answer.
    exporter = exporter_for(hosts["multi-fault"])  # --ampcli.cache 0
    try:
        scrape(exporter)
        assert exporter.shared.ampcli.runs == 1
        scrape(exporter)
        assert exporter.shared.ampcli.runs == 2
    finally:
        exporter.close()
