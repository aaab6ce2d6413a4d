"""The real `amp-exporter serve` process on loopback, scraped over HTTP."""

from __future__ import annotations

import http.client
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
    assert out.returncode == 0 and out.stdout.startswith("amp-exporter, version ")


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

    def stable(text: str) -> set[str]:  # durations, counters, and the exporter's own process
        return {line for line in text.splitlines() if "duration_seconds" not in line
                and "scrapes_total" not in line and "cpu_seconds" not in line
                and not line.startswith("process_")}

    assert stable(zipped) == stable(plain) and "cisco_amp_fault_active" in plain


# -- HTTP/1.1 on the real server: keep-alive, closing, methods, malformed requests --------

def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def settled_threads(pid: int, timeout: float = 5) -> int:
    """The process's thread count once it stops changing (a closed connection's thread
    takes a moment to end)."""
    deadline = time.monotonic() + timeout
    last = threads(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = threads(pid)
        if now == last:
            return now
        last = now
    return last


def exchange(port: int, data: bytes, quiet: float = 1.0) -> tuple[bytes, bool]:
    """Send DATA on a new connection; (all the server sent, whether it closed the
    connection) once it closes or has said nothing more for QUIET seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        conn.settimeout(quiet)
        received = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk


def responses(data: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """The (status line, headers, body) of each response in DATA (none to a HEAD),
    bodies cut by their Content-Length."""
    found = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"an unfinished response head: {head!r}"
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        size = int(headers["content-length"])
        found.append((status, headers, data[:size]))
        data = data[size:]
    return found


@pytest.fixture(scope="module")
def http_server(hosts):
    """One real exporter for the tests that only read from it. Without the events
    collector: its eBPF loader thread, where eBPF runs, would move the thread counts."""
    s = Server(hosts["healthy-ebpf-btf"], "--no-collector.events")
    yield s
    s.stop()


def test_keep_alive_reuses_one_connection_and_one_thread(http_server):
    import gzip

    s = http_server
    s.get()  # the first scrape starts what the collectors keep running
    before = settled_threads(s.proc.pid)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        counts = []
        local = None
        for _ in range(10):
            conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
            r = conn.getresponse()
            body = gzip.decompress(r.read()).decode()
            assert r.status == 200 and "cisco_amp_connector_installed" in body
            assert not r.will_close and r.headers["Connection"] is None
            # http.client opens a new socket when the server closed the last one
            local = local or conn.sock.getsockname()
            assert conn.sock is not None and conn.sock.getsockname() == local
            counts.append(threads(s.proc.pid))
        assert counts == [before + 1] * 10  # one thread for the connection, not per request
    finally:
        conn.close()
    assert settled_threads(s.proc.pid) == before  # and it ends with the connection


def test_http11_stays_open_connection_close_and_http10_close(http_server):
    port = http_server.port
    data, closed = exchange(port, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n", quiet=0.5)
    assert not closed and data.startswith(b"HTTP/1.1 200 OK\r\n")
    data, closed = exchange(port, b"GET /-/healthy HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert closed and responses(data)[0][1]["connection"] == "close"
    data, closed = exchange(port, b"GET /-/healthy HTTP/1.0\r\n\r\n")
    assert closed and data.startswith(b"HTTP/1.0 200 OK\r\n")
    # HTTP/1.0 keeps the connection when asked to, and says so.
    data, closed = exchange(port, b"GET /-/healthy HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                                  b"GET /-/ready HTTP/1.0\r\n\r\n")
    (_, first, body1), (_, second, body2) = responses(data)
    assert first["connection"] == "keep-alive" and body1 == body2 == b"OK\n"
    assert second["connection"] == "close" and closed


def test_pipelined_requests_are_answered_in_order(http_server):
    data, closed = exchange(http_server.port,
                            b"GET /-/healthy HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"
                            b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert [status for status, _, _ in responses(data)] == [
        "HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found"]
    assert b"<html>" in responses(data)[1][2] and closed


def test_head_has_the_headers_and_length_but_no_body(http_server):
    port = http_server.port
    for path in ("/", "/-/healthy"):
        data, _ = exchange(port, f"GET {path} HTTP/1.1\r\n\r\n".encode(), quiet=0.3)
        get_length = responses(data)[0][1]["content-length"]
        # A HEAD then a GET on one connection: were there a body after the HEAD's headers,
        # the GET's answer would not start right after them.
        data, _ = exchange(port, f"HEAD {path} HTTP/1.1\r\n\r\nGET /-/ready HTTP/1.1\r\n"
                                 "Connection: close\r\n\r\n".encode())
        head_end = data.index(b"\r\n\r\n") + 4
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert f"Content-Length: {get_length}\r\n".encode() in data[:head_end]
        assert data[head_end:].startswith(b"HTTP/1.1 200 OK\r\n"), data
        assert data.endswith(b"\r\n\r\nOK\n")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("HEAD", "/metrics")
        r = conn.getresponse()
        assert r.status == 200 and int(r.headers["Content-Length"]) > 1000
        assert r.read() == b""
    finally:
        conn.close()


def test_other_methods_get_405_and_the_connection_goes_on(http_server):
    conn = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=10)
    try:
        for method, body in (("POST", b"a=1"), ("PUT", b"x" * 1000), ("DELETE", None),
                             ("OPTIONS", None)):
            conn.request(method, "/metrics", body=body)
            r = conn.getresponse()
            assert r.status == 405 and r.read() == b"Method Not Allowed\n", method
            assert {m.strip() for m in r.headers["Allow"].split(",")} == {"GET", "HEAD"}
        sock = conn.sock
        conn.request("GET", "/-/healthy")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"OK\n") and conn.sock is sock  # same connection
    finally:
        conn.close()


@pytest.mark.parametrize("request_line", [b"garbage", b"GET /", b"GET / HTTP/1.1 extra",
                                          b"GET / FTP/1.1", b"G(T / HTTP/1.1",
                                          b"GET nope HTTP/1.1", b"\x16\x03\x01\x02\x00\x01"])
def test_garbage_request_line_gets_400_and_the_server_goes_on(http_server, request_line):
    data, closed = exchange(http_server.port, request_line + b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and closed, data
    assert b"Traceback" not in data
    assert http_server.get("/-/healthy") == (200, "OK\n")


def test_over_long_or_too_many_headers_are_refused_and_others_served(http_server):
    port = http_server.port
    long_line = b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n"
    many = b"GET /metrics HTTP/1.1\r\n" + b"X-Many: a\r\n" * 500 + b"\r\n"
    for request in (long_line, many):
        data, closed = exchange(port, request)
        status = responses(data)[0][0]
        assert status in ("HTTP/1.1 431 Request Header Fields Too Large",
                          "HTTP/1.1 400 Bad Request") and closed, status
        assert b"cisco_amp" not in data
    data, closed = exchange(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 414 URI Too Long\r\n") and closed
    status, body = http_server.get()
    assert status == 200 and "cisco_amp_connector_installed" in body


def test_half_sent_requests_block_no_other_scrape(http_server):
    stalled = []
    try:
        for part in (b"GET /metrics HTTP/1.1\r\nHost: x", b"GET /metr", b"GE"):
            conn = socket.create_connection(("127.0.0.1", http_server.port), timeout=5)
            conn.sendall(part)  # then silence
            stalled.append(conn)
        time.sleep(0.2)
        for _ in range(3):
            start = time.monotonic()
            status, _ = http_server.get(timeout=5)
            assert status == 200 and time.monotonic() - start < 1.0
        # The stalled ones are still waited for, and answered once they finish.
        stalled[1].sendall(b"ics HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert stalled[1].recv(17) == b"HTTP/1.1 200 OK\r\n"
    finally:
        for conn in stalled:
            conn.close()


def test_query_string_is_not_part_of_the_route(http_server):
    status, body = http_server.get("/metrics?debug=1&x=%20")
    assert status == 200 and "cisco_amp_connector_installed" in body
    assert http_server.get("/-/healthy?probe=kubelet") == (200, "OK\n")
    assert http_server.get("/?")[0] == 200
    assert http_server.get("/nope?/metrics")[0] == 404


def test_kept_alive_idle_connection_does_not_hold_shutdown(hosts):
    s = Server(hosts["no-connector"])
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        assert r.status == 200 and not r.will_close
        r.read()  # and the connection now idles, kept alive
        start = time.monotonic()
        assert s.stop() == 0
        assert time.monotonic() - start < 3.0
        assert conn.sock.recv(1) == b""  # dropped, not left open
    finally:
        conn.close()
        s.stop()
