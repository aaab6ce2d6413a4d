"""The real `amp-exporter serve` process on loopback, scraped over HTTP."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import pytest
from conftest import REPO, Scrape, concurrently, have, parse_exposition


class Server:
    def __init__(self, root: Path, *flags: str, argv0: tuple[str, ...] = (sys.executable,),
                 env: Optional[dict] = None) -> None:
        """argv0: what runs `-m amp_exporter` (a python, maybe behind setpriv); with env,
        it runs in / (as another user may not enter the checkout)."""
        cwd = REPO if env is None else Path("/")
        env = env or {**os.environ, "PYTHONPATH": str(REPO), "TZ": "UTC"}
        self._start([*argv0, "-m", "amp_exporter", "serve", "--path.rootfs", str(root),
                     *flags], env, cwd)

    @classmethod
    def command(cls, argv: list[str], env: Optional[dict] = None) -> Server:
        """ARGV (any exporter command line ending in `serve ...`), served the same way."""
        server = cls.__new__(cls)
        server._start(argv, env, None)
        return server

    def _start(self, argv: list[str], env: Optional[dict], cwd: Optional[Path],
               timeout: float = 30) -> None:
        """Starts ARGV on 127.0.0.1 and reads the port from its 'listening' log line."""
        self.proc = subprocess.Popen([*argv, "--web.listen-address", "127.0.0.1:0"],
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            match = re.search(r"msg=listening address=127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                threading.Thread(target=self._drain, daemon=True).start()
                return
        self.stop()
        raise AssertionError("server did not start: " + "".join(self.lines))

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def get(self, path: str = "/metrics", timeout: float = 10) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def scrape(self) -> Scrape:
        status, body = self.get()
        assert status == 200
        return Scrape(parse_exposition(body))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server():
    started: list[Server] = []

    def start(root: Path, *flags: str) -> Server:
        s = Server(root, *flags)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def test_serves_metrics_landing_page_and_health(hosts, server):
    s = server(hosts["fault-18-overloaded"])
    scrape = s.scrape()
    assert scrape.value("cisco_amp_fault_active", fault_id=18) == 1
    assert scrape.value("cisco_amp_fault_severity", fault_id=18) == 3
    assert scrape.value("cisco_amp_connector_degraded") == 1
    status, page = s.get("/")
    assert status == 200 and 'href="/metrics"' in page
    assert s.get("/-/healthy") == (200, "OK\n")
    assert s.get("/nope")[0] == 404
    assert s.stop() == 0


@pytest.mark.skipif(not have("promtool"), reason="promtool (Debian package prometheus) missing")
def test_promtool_accepts_what_is_served(hosts, server):
    _, body = server(hosts["multi-fault"]).get()
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout


def test_hanging_ampcli_fails_the_collector_not_the_scrape(host_copy, server):
    root = host_copy("healthy-ebpf-btf")
    (root / "opt/cisco/amp/bin/ampcli").write_text("#!/bin/sh\nexec sleep 600\n")
    s = server(root, "--ampcli.timeout", "1")
    start = time.monotonic()
    scrape = s.scrape()
    assert time.monotonic() - start < 2.0  # timeout + 1 s
    assert scrape.success()["connector"] == 0
    assert {k: v for k, v in scrape.success().items() if k != "connector"} == dict.fromkeys(
        set(scrape.success()) - {"connector"}, 1.0)
    assert "cisco_amp_fault_active" not in scrape  # a check that could not run is left out
    assert scrape.value("amp_exporter_ampcli_success") == 0
    assert scrape.value("amp_exporter_collector_errors_total", collector="connector",
                        reason="timeout") == 1
    assert scrape.value("cisco_amp_connector_installed") == 1
    assert any("reason=timeout" in line for line in s.lines)


def test_concurrent_scrapes_start_one_ampcli(host_copy, server):
    root = host_copy("healthy-ebpf-btf")
    counter = root / "runs"
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    real = ampcli.read_text()
    ampcli.write_text(real.replace("#!/bin/sh\n", f"#!/bin/sh\necho x >> {counter}\nsleep 0.5\n",
                                   1))
    s = server(root)
    results = concurrently(s.scrape, 30)
    assert len(results) == 30
    assert all(r.success()["connector"] == 1 for r in results)
    assert counter.read_text().count("x") == 1


def test_port_in_use_is_a_clear_error(hosts):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "amp_exporter", "--path.rootfs", str(hosts["no-connector"]),
             "--web.listen-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "Address already in use" in result.stderr


@pytest.mark.parametrize("flags", [["--no-such-flag"], ["--ampcli.timeout", "-1"],
                                   ["--web.listen-address", "nonsense"],
                                   ["--path.rootfs", "/does/not/exist"]])
def test_bad_flags_exit_2_with_a_message(flags):
    result = subprocess.run([sys.executable, "-m", "amp_exporter", *flags], capture_output=True,
                            text=True, timeout=30, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "error:" in result.stderr


def test_console_script_is_installed():
    exe = shutil.which("amp-exporter", path=os.path.dirname(sys.executable))
    assert exe, "pip install -e . should provide the amp-exporter command"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("amp-exporter ")


def test_gzip_when_asked_and_plain_otherwise(hosts, server):
    # Prometheus asks for gzip; curl and browsers may not. Same exposition either way.
    import gzip

    s = server(hosts["multi-fault"], "--ampcli.cache", "60")
    url = f"http://127.0.0.1:{s.port}/metrics"
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        packed = r.read()
        assert int(r.headers["Content-Length"]) == len(packed)
        zipped = gzip.decompress(packed).decode()
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Encoding"] is None
        plain = r.read().decode()

    def stable(text: str) -> set[str]:  # durations and counters of the scrape itself move
        return {line for line in text.splitlines() if "duration_seconds" not in line
                and "scrapes_total" not in line and "cpu_seconds" not in line}

    assert stable(zipped) == stable(plain) and "cisco_amp_fault_active" in plain
