"""Running a real (stand-in) ampcli process: timeouts, garbage, floods, strays, caching,
and exit codes (not public: a status printed with a non-zero code is used, and said so)."""

import itertools
import logging
import os
import subprocess
import threading
import time

import pytest
from conftest import concurrently
from test_http import Server
from test_restarts import exporter_for, scrape
from test_status_parser import REAL

from amp_exporter.host.ampcli import OUTPUT_LIMIT, AmpcliRunner

STATUS = "Status: Connected\\nMode: Normal\\nFaults: None\\n"
# ampcli's real format (test_status_parser.REAL), after the noise lines it may print first.
REAL_STATUS = ("[logger] Set minimum reported log level to notice\nTrying to connect...\n"
               "Connected.\n" + REAL)


def script(tmp_path, body, name="ampcli"):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def pgrep(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return out.stdout.split()


_seconds = itertools.count()


def unique_seconds() -> str:
    """A `sleep` duration no other process uses: its command line is how pgrep finds it (a
    marker in a comment is no part of any command line, and dash execs `sh -c CMD`'s last
    command in place, so neither `# marker` nor `sh -c "... # marker"` can be found)."""
    return f"{400 + next(_seconds)}.{os.getpid()}{time.monotonic_ns() % 10**6:06d}"


def test_answers_and_parses(tmp_path):
    r = AmpcliRunner(script(tmp_path, f'[ "$1" = status ] && printf "{STATUS}"'), 5, 0)
    result = r.status()
    assert result.ok and result.status.connected and result.exit_code == 0


def test_hang_is_killed_at_the_deadline_with_its_children(tmp_path):
    child, hang = unique_seconds(), unique_seconds()
    # The child keeps stdout open and would outlive a plain kill of ampcli.
    path = script(tmp_path, f'sleep {child} & exec sleep {hang}')
    r = AmpcliRunner(path, 0.5, 0)
    seen = []
    watch = threading.Thread(target=lambda: (time.sleep(0.3), seen.append(
        pgrep(f"sleep {child}") + pgrep(f"sleep {hang}"))))
    watch.start()
    start = time.monotonic()
    result = r.status()
    assert time.monotonic() - start < 1.5
    assert not result.ok and result.error == "timeout"
    watch.join()
    assert len(seen[0]) == 2  # both ran: what follows is no vacuous check
    time.sleep(0.2)
    assert pgrep(f"sleep {child}") == [] and pgrep(f"sleep {hang}") == []


def test_children_left_behind_after_a_good_answer_are_killed(tmp_path):
    seconds = unique_seconds()
    # The stray closes stdout, so ampcli's answer arrives; it must not survive it. The
    # script answers once the stray runs, so that it surely existed.
    path = script(tmp_path, f'sleep {seconds} >/dev/null 2>&1 &\n'
                  f'while ! pgrep -f "sleep {seconds}" >/dev/null; do :; done\n'
                  f'printf "{STATUS}"')
    r = AmpcliRunner(path, 5, 0)
    assert r.status().ok
    time.sleep(0.2)
    assert pgrep(f"sleep {seconds}") == []


def test_nonzero_exit(tmp_path):
    result = AmpcliRunner(script(tmp_path, 'echo "Error: daemon not running"; exit 3'), 5,
                          0).status()
    assert result.error == "exit_status" and result.exit_code == 3
    assert result.message == ("ampcli exited with status 3 after printing "
                              "'Error: daemon not running'")


def status_then_exit(tmp_path, code_file):
    """A stand-in ampcli that prints the real status format, then exits with the code held
    in CODE_FILE (so a test can change it between runs)."""
    return script(tmp_path, f"cat <<'EOF'\n{REAL_STATUS}EOF\nexit $(cat {code_file})")


@pytest.mark.parametrize("code", [1, 3])
def test_nonzero_exit_after_a_status_uses_it_and_says_so(tmp_path, caplog, code):
    code_file = tmp_path / "code"
    code_file.write_text(str(code))
    r = AmpcliRunner(status_then_exit(tmp_path, code_file), 5, 0)
    with caplog.at_level(logging.WARNING, logger="amp_exporter.host.ampcli"):
        result = r.status()
        assert result.ok and result.error is None and result.exit_code == code
        assert list(result.status.faults) == [18] and result.status.degraded
        assert f"status {code}" in result.message and "used" in result.message
        for _ in range(3):
            assert r.status().exit_code == code  # the same code again: no new warning
        warnings = [rec for rec in caplog.records if rec.name == "amp_exporter.host.ampcli"]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        assert warnings[0].exit_code == code and "status" in warnings[0].getMessage()
        # Once per change of exit code: another code warns again, 0 then the code again too.
        code_file.write_text("2")
        assert r.status().exit_code == 2
        code_file.write_text("0")
        result = r.status()
        assert result.ok and result.exit_code == 0 and result.message == "ok"
        code_file.write_text(str(code))
        assert r.status().ok
        assert r.status().ok
    codes = [rec.exit_code for rec in caplog.records if rec.name == "amp_exporter.host.ampcli"]
    assert codes == [code, 2, code] and r.runs == 8


def test_nonzero_exit_after_only_noise_is_still_a_failure(tmp_path, caplog):
    # What a host whose daemon died shows: no status, so no answer, whatever the code.
    path = script(tmp_path, "echo '[logger] Set minimum reported log level to notice'\n"
                  "echo 'Trying to connect...'\nexit 1")
    with caplog.at_level(logging.WARNING, logger="amp_exporter.host.ampcli"):
        result = AmpcliRunner(path, 5, 0).status()
    assert not result.ok and result.error == "exit_status" and result.exit_code == 1
    assert result.message == "ampcli exited with status 1 after printing 'Trying to connect...'"
    assert not [rec for rec in caplog.records if rec.name == "amp_exporter.host.ampcli"]


def test_killed_by_a_signal_has_no_exit_code(tmp_path):
    result = AmpcliRunner(script(tmp_path, f"cat <<'EOF'\n{REAL_STATUS}EOF\nkill -9 $$"), 5,
                          0).status()
    assert not result.ok and result.error == "exit_status" and result.exit_code is None
    assert result.message.startswith("ampcli was killed by SIGKILL after printing 'ID 18 - ")


def test_served_status_with_a_nonzero_exit(host_copy):
    """Through `serve`: the faults of a status printed with exit 1 are exported, the exit
    code with them, and the log says so once, not on every scrape."""
    root = host_copy("healthy-ebpf-btf")
    code_file = root / "ampcli-exit-code"
    code_file.write_text("1")
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    ampcli.write_text(f"#!/bin/sh\ncat <<'EOF'\n{REAL_STATUS}EOF\nexit $(cat {code_file})\n")
    server = Server(root, "--ampcli.cache", "0")
    try:
        for _ in range(3):
            s = server.scrape()
            assert s.success()["connector"] == 1 and not s.errors()
            assert s.value("cisco_amp_connector_state", state="answering") == 1
            assert s.value("cisco_amp_fault_active", fault_id="18") == 1
            assert s.value("cisco_amp_fault_severity", fault_id="18") == 2
            assert s.value("cisco_amp_connector_degraded") == 1
            assert s.value("amp_exporter_ampcli_success") == 1
            assert s.value("amp_exporter_ampcli_exit_code") == 1
        code_file.write_text("0")
        s = server.scrape()
        assert s.value("amp_exporter_ampcli_exit_code") == 0
        assert s.value("cisco_amp_fault_active", fault_id="18") == 1
        ampcli.write_text("#!/bin/sh\necho 'Trying to connect...'\nexit 1\n")
        s = server.scrape()
        assert s.value("amp_exporter_ampcli_success") == 0
        assert s.value("amp_exporter_ampcli_exit_code") == 1
        assert s.value("cisco_amp_connector_state", state="not_answering") == 1
        assert s.errors() == {("connector", "exit_status")}
    finally:
        assert server.stop() == 0
    log = "".join(server.lines)
    said = [line for line in log.splitlines() if "printed a status" in line]
    assert len(said) == 1, log
    assert "level=warn" in said[0] and "exit_code=1" in said[0]
    assert "after printing 'Trying to connect...'" in log and "Traceback" not in log


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


@pytest.mark.parametrize("name,code", [("healthy-ebpf-btf", 0), ("daemon-dead", 1),
                                       ("ampcli-silent", None)])
def test_exit_code_of_the_example_hosts(hosts, name, code):
    # daemon-dead: 'Trying to connect...' and exit 1; ampcli-silent: killed at the deadline.
    exporter = exporter_for(hosts[name], "--ampcli.timeout", "0.5")
    try:
        s = scrape(exporter)
        assert s.value("amp_exporter_ampcli_exit_code") == code
        assert s.value("amp_exporter_ampcli_success") == (code == 0)
    finally:
        exporter.close()
