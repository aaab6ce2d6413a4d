"""./scripts/run-example, the README's first command: usage, host names checked before any
set-up, a real run on loopback only that stops cleanly, and no service ever touched."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, free_port

RUN = REPO / "scripts" / "run-example"
DEFAULT_PORT = 9872


def host_names() -> list[str]:
    out = subprocess.run([sys.executable, str(REPO / "examples" / "build_hosts.py"), "--list"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.fixture
def bare_copy(tmp_path):
    """The scripts and examples alone, without .venv or build/: whatever set-up or build
    the run command does there shows up as new files."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts")
    shutil.copytree(REPO / "examples", root / "examples",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_help_says_what_it_does_and_exits_0(bare_copy):
    r = subprocess.run([str(bare_copy / "scripts" / "run-example"), "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("usage: ./scripts/run-example")
    for words in ("healthy-ebpf-btf", "--list", "amp-exporter serve", "127.0.0.1:9872",
                  "--web.listen-address"):
        assert words in out, words
    assert "serving" not in out
    assert sorted(p.name for p in bare_copy.iterdir()) == ["examples", "scripts"]


def test_unknown_host_names_it_and_the_valid_ones_exits_2_builds_nothing(bare_copy):
    r = subprocess.run([str(bare_copy / "scripts" / "run-example"), "no-such-host"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stdout == ""
    [line] = r.stderr.splitlines()
    assert "'no-such-host'" in line
    listed = line.split("valid names: ", 1)[1].split(", ")
    assert listed == host_names()
    # No set-up (.venv) and no build (build/hosts) happened.
    assert sorted(p.name for p in bare_copy.iterdir()) == ["examples", "scripts"]


def listening(port: int) -> dict[str, list[str]]:
    """Local addresses (hex, as the kernel writes them) of the sockets listening on port,
    per /proc/net/tcp and tcp6."""
    found: dict[str, list[str]] = {}
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        rows = path.read_text().splitlines()[1:] if path.exists() else []
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                found.setdefault(table, []).append(local.rsplit(":", 1)[0])
    return found


def non_loopback_address() -> str | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent: only picks the outgoing address
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


class Run:
    """./scripts/run-example in the repository (it reuses .venv), until it answers."""

    def __init__(self, *args: str, env: dict | None = None, port: int = DEFAULT_PORT,
                 tmp: Path) -> None:
        self.port = port
        self.out = tmp / f"run-example-{port}.out"
        with self.out.open("w") as f:
            self.proc = subprocess.Popen([str(RUN), *args], stdout=f, stderr=subprocess.STDOUT,
                                         env=env or os.environ.copy(), cwd=tmp)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    self.body = r.read().decode()
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    pytest.fail(f"run-example never answered:\n{self.output()}")
                time.sleep(0.1)

    def output(self) -> str:
        return self.out.read_text()

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def check_loopback_only(port: int) -> None:
    assert listening(port) == {"tcp": ["0100007F"]}  # 127.0.0.1 only, no 0.0.0.0, no [::]
    addr = non_loopback_address()
    if addr:
        with pytest.raises(OSError):
            socket.create_connection((addr, port), timeout=2).close()


@pytest.mark.slow
def test_default_serves_on_loopback_9872_and_stops_with_exit_0(tmp_path):
    try:
        with socket.create_server(("0.0.0.0", DEFAULT_PORT)):
            pass
    except OSError:
        pytest.skip(f"port {DEFAULT_PORT} is in use here: the next test runs on a free port")
    run = Run(tmp=tmp_path)
    try:
        assert "cisco_amp_connector_state" in run.body
        check_loopback_only(DEFAULT_PORT)
        assert ("serving example host 'healthy-ebpf-btf' on http://127.0.0.1:9872/metrics"
                in run.output())
    finally:
        rc = run.stop(signal.SIGINT)
    assert rc == 0, run.output()


@pytest.mark.slow
def test_another_host_and_the_users_address_win_and_sigterm_exits_0(tmp_path):
    port = free_port()
    run = Run("fault-11-kernel-headers", "--web.listen-address", f"127.0.0.1:{port}",
              port=port, tmp=tmp_path)
    try:
        assert 'cisco_amp_fault_active{fault_id="11"} 1' in run.body
        check_loopback_only(port)
        assert (f"serving example host 'fault-11-kernel-headers' on "
                f"http://127.0.0.1:{port}/metrics" in run.output())
    finally:
        rc = run.stop(signal.SIGTERM)
    assert rc == 0, run.output()


SHIMMED = ("systemctl", "service", "invoke-rc.d", "deb-systemd-invoke", "apt-get", "apt",
           "dpkg", "dpkg-query")


@pytest.mark.slow
@pytest.mark.needs_root
def test_no_service_is_touched_even_when_packages_look_missing(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: as another user the set-up installs nothing")
    # Shims that record every call; dpkg-query reports every package missing, so the set-up
    # goes down its install path (the old one then installed prometheus & co and ran
    # `systemctl disable --now` on them).
    shims = tmp_path / "shims"
    shims.mkdir()
    calls = tmp_path / "calls"
    calls.touch()
    for name in SHIMMED:
        rc = 1 if name == "dpkg-query" else 0
        (shims / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit {rc}\n')
        (shims / name).chmod(0o755)
    # A running prometheus: a stand-in named so (its comm), listening on loopback.
    stand_in = tmp_path / "prometheus"
    stand_in.symlink_to(os.path.realpath(sys.executable))
    prom = subprocess.Popen(
        [str(stand_in), "-c", "import socket, time\n"
         "s = socket.create_server(('127.0.0.1', 0)); print(s.getsockname()[1], flush=True)\n"
         "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        prom_port = int(prom.stdout.readline())
        assert Path(f"/proc/{prom.pid}/comm").read_text().strip() == "prometheus"
        before = subprocess.run(["pgrep", "-x", "prometheus"], capture_output=True,
                                text=True).stdout.split()
        assert str(prom.pid) in before

        port = free_port()
        env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
        run = Run("--web.listen-address", f"127.0.0.1:{port}", env=env, port=port, tmp=tmp_path)
        assert run.stop() == 0, run.output()

        assert prom.poll() is None, "the running prometheus was stopped"
        assert Path(f"/proc/{prom.pid}/comm").read_text().strip() == "prometheus"
        with socket.create_connection(("127.0.0.1", prom_port), timeout=2):
            pass
        after = subprocess.run(["pgrep", "-x", "prometheus"], capture_output=True,
                               text=True).stdout.split()
        assert str(prom.pid) in after
    finally:
        prom.kill()
        prom.wait()
    recorded = calls.read_text().splitlines()
    assert any(c.startswith("dpkg-query") for c in recorded), "the shims were not on PATH"
    service_calls = [c for c in recorded
                     if c.split()[0] in ("systemctl", "service", "invoke-rc.d",
                                         "deb-systemd-invoke")]
    assert service_calls == []
    installs = [c.split()[1:] for c in recorded if c.split()[0] in ("apt-get", "apt", "dpkg")]
    installed = {w for args in installs if "install" in args for w in args
                 if not w.startswith("-") and w != "install"}
    assert installs, "the set-up did not try to install what looked missing"
    assert installed <= {"python3", "python3-venv", "python3-pip"}, installed
