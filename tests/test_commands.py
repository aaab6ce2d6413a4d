"""`check` and `textfile`: exit codes, the report, atomic writes."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, builder, parse_exposition, run_exporter


@pytest.mark.parametrize("name", ["healthy-ebpf-btf", "healthy-ebpf-headers", "healthy-kmod"])
def test_check_is_0_on_healthy_hosts(hosts, name):
    result = run_exporter("check", "--path.rootfs", str(hosts[name]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: the connector answers and reports no fault")
    assert result.stdout.rstrip().endswith("Healthy.")


@pytest.mark.parametrize(("name", "first_line", "flags"), [
    ("daemon-dead", "CRITICAL: the connector daemon (ampdaemon) is not running; this host "
     "is unprotected. Next: Start it with systemctl start cisco-amp", ()),
    ("ampcli-silent", "CRITICAL: the connector daemon runs but does not answer `ampcli "
     "status`; its protection cannot be confirmed. Next: Run /opt/cisco/amp/bin/ampcli status "
     "by hand", ("--ampcli.timeout", "0.5")),
    # A host that should be protected and is not: not healthy.
    ("no-connector", "NOT PROTECTED: no Cisco Secure Endpoint connector is installed on this "
     "host. Next: Install the connector", ()),
])
def test_check_is_1_and_says_first_when_the_connector_cannot_protect(hosts, name, first_line,
                                                                       flags):
    result = run_exporter("check", "--path.rootfs", str(hosts[name]), *flags)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(first_line), result.stdout
    assert "\n" not in result.stdout.split("Next: ", 1)[1].split("\n", 1)[0]
    assert "Healthy." not in result.stdout


def test_check_says_what_ampcli_printed_when_it_fails(host_copy):
    root = host_copy("healthy-ebpf-btf")
    (root / "opt/cisco/amp/bin/ampcli").write_text(
        "#!/bin/sh\necho 'Trying to connect...'\necho 'Error: \001socket closed\033[0m'\nexit 3\n")
    result = run_exporter("check", "--path.rootfs", str(root))
    assert result.returncode == 1
    assert result.stdout.startswith("CRITICAL: the connector daemon runs but does not answer")
    assert ("ampcli: ampcli exited with status 3 after printing 'Error: socket closed[0m'"
            in result.stdout), result.stdout


def test_check_cannot_ask_an_ampcli_it_may_not_run(host_copy):
    root = host_copy("healthy-ebpf-btf")
    (root / "opt/cisco/amp/bin/ampcli").chmod(0o644)
    result = run_exporter("check", "--path.rootfs", str(root))
    assert result.returncode == 1
    assert result.stdout.startswith("UNKNOWN: amp-exporter cannot ask the connector")


@pytest.mark.parametrize("name", [n for n in builder.HOSTS if n.startswith(("fault-", "multi"))])
def test_check_is_1_with_a_fault_or_cause(hosts, name):
    result = run_exporter("check", "--path.rootfs", str(hosts[name]))
    assert result.returncode == 1, result.stdout
    assert "RAISED" in result.stdout
    assert result.stdout.startswith("PROBLEM: ")


def test_check_names_causes_and_what_to_do(hosts):
    out = run_exporter("check", "--path.rootfs", str(hosts["fault-11-kernel-headers"])).stdout
    assert "[11] Required kernel-level packages missing: RAISED (critical)" in out
    assert "lib/modules/4.19.0-26-amd64/build does not resolve" in out
    assert "linux-headers-$(uname -r)" in out
    assert ("Monitoring: files by ebpf (no module of it loaded; the connector reports fault "
            "11: it tried eBPF); network by ebpf (") in out
    assert "eBPF headers (the connector reports fault 11; fault 11 says it builds against " \
        "the kernel's headers)" in out


def test_check_reports_a_cause_without_a_fault(host_copy):
    root = host_copy("healthy-ebpf-btf")
    (root / "opt/cisco/amp/clamav/daily.cvd").write_bytes(b"garbage")
    result = run_exporter("check", "--path.rootfs", str(root))
    assert result.returncode == 1
    assert "Scan service failed to start: clear, but a cause is present" in result.stdout
    assert "daily.cvd: truncated" in result.stdout


def test_check_with_a_hung_ampcli_says_so(host_copy):
    root = host_copy("healthy-ebpf-btf")
    (root / "opt/cisco/amp/bin/ampcli").write_text("#!/bin/sh\nsleep 60\n")
    result = run_exporter("check", "--path.rootfs", str(root), "--ampcli.timeout", "0.5")
    assert result.returncode == 1
    assert "unknown (ampcli did not answer)" in result.stdout
    assert "Checks that could not run (see the log above): connector" in result.stdout


def test_check_usage_error_is_2():
    assert run_exporter("check", "--bogus").returncode == 2


def test_textfile_writes_atomically(hosts, tmp_path):
    out = tmp_path / "amp.prom"
    result = run_exporter("textfile", "--output", str(out), "--path.rootfs",
                          str(hosts["fault-19-selinux"]))
    assert result.returncode == 0, result.stderr
    samples = parse_exposition(out.read_text())
    assert samples["cisco_amp_fault_active"][(("fault_id", "19"),)] == 1
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["amp.prom"]  # no temporary left


def test_textfile_killed_mid_run_leaves_the_old_file_whole(host_copy, tmp_path):
    root = host_copy("healthy-ebpf-btf")
    (root / "opt/cisco/amp/bin/ampcli").write_text("#!/bin/sh\nsleep 60\n")
    (tmp_path / "textfiles").mkdir()
    out = tmp_path / "textfiles" / "amp.prom"
    out.write_text("# previous complete exposition\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "amp_exporter", "textfile", "--output", str(out),
         "--path.rootfs", str(root), "--ampcli.timeout", "30"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.read_text() == "# previous complete exposition\n"
    assert [p.name for p in out.parent.iterdir()] == ["amp.prom"]


def _limited_to_1000_bytes():
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))


def test_textfile_that_cannot_finish_its_write_leaves_nothing(hosts, tmp_path):
    """write(2) fails half-way (EFBIG here, as ENOSPC on a full disk): exit 1, the old file
    whole, no temporary left."""
    out = tmp_path / "amp.prom"
    out.write_text("# previous complete exposition\n")
    result = run_exporter("textfile", "--output", str(out), "--path.rootfs",
                          str(hosts["multi-fault"]), preexec_fn=_limited_to_1000_bytes,
                          env_extra={"PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 1 and "File too large" in result.stderr, result.stderr
    assert out.read_text() == "# previous complete exposition\n"
    assert [p.name for p in tmp_path.iterdir()] == ["amp.prom"]


def test_textfile_killed_during_the_write_itself(hosts, tmp_path):
    """The kernel kills the writer in the middle of write(2): with RLIMIT_FSIZE at 1,000
    bytes and SIGXFSZ at its default action (Python ignores it; a sitecustomize on the
    path restores it), the write stops at byte 1,000 and the process dies. The old file
    stays whole; the half-written temporary is no *.prom (node_exporter never reads it)
    and the next run removes it."""
    out = tmp_path / "out" / "amp.prom"
    out.parent.mkdir()
    out.write_text("# previous complete exposition\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n")
    args = ("textfile", "--output", str(out), "--path.rootfs", str(hosts["multi-fault"]))
    killed = run_exporter(*args, preexec_fn=_limited_to_1000_bytes,
                          env_extra={"PYTHONDONTWRITEBYTECODE": "1",
                                     "PYTHONPATH": f"{site}:{REPO}"})
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr
    assert out.read_text() == "# previous complete exposition\n"
    [left] = [p for p in out.parent.iterdir() if p.name != "amp.prom"]
    assert left.name.startswith(".amp-exporter.") and left.suffix == ".tmp"
    assert left.stat().st_size == 1000  # half a file, really
    again = run_exporter(*args)
    assert again.returncode == 0, again.stderr
    assert "removed a temporary file left by a killed run" in again.stderr
    assert [p.name for p in out.parent.iterdir()] == ["amp.prom"]
    assert parse_exposition(out.read_text())["cisco_amp_fault_active"]


def test_textfile_leaves_a_running_writers_temporary_alone(hosts, tmp_path):
    # Two runs at once (a timer overlapping a manual run): neither removes the other's file.
    with subprocess.Popen(["sleep", "30"]) as alive:
        theirs = tmp_path / f".amp-exporter.{alive.pid}.abc.tmp"
        theirs.write_text("in progress")
        result = run_exporter("textfile", "--output", str(tmp_path / "amp.prom"),
                              "--path.rootfs", str(hosts["no-connector"]))
        alive.kill()
    assert result.returncode == 0 and theirs.exists()


def test_textfile_to_an_unwritable_place_fails_cleanly(hosts):
    result = run_exporter("textfile", "--output", "/proc/no/such/dir/x.prom", "--path.rootfs",
                          str(hosts["no-connector"]))
    assert result.returncode == 1 and "cannot write textfile" in result.stderr
