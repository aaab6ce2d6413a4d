"""TLS and basic auth on the real `amp-exporter serve` process, with real clients and
certificates made here by the openssl CLI."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest
from conftest import concurrently, have, parse_exposition
from test_http import Server

pytestmark = pytest.mark.skipif(not have("openssl"), reason="openssl CLI missing")

PASSWORD = "s3cret-scrape"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def signed(d: Path, name: str, subject: str, san: str, ca: str = "ca") -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1, a client certificate from the CA, and a
    client certificate from another CA."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
                "-subj", f"/CN={ca}", cwd=d)
    signed(d, "server", "/CN=amp-exporter", "IP:127.0.0.1,DNS:localhost")
    signed(d, "client", "/CN=prometheus", "DNS:prometheus")
    signed(d, "other-client", "/CN=intruder", "DNS:intruder")
    signed(d, "rogue", "/CN=prometheus", "DNS:prometheus", ca="rogue-ca")
    return d


@pytest.fixture
def serve(hosts, tmp_path):
    started: list[Server] = []

    def start(config: str, *flags: str) -> Server:
        path = tmp_path / "web.yml"
        path.write_text(config)
        s = Server(hosts["healthy-ebpf-btf"], "--web.config.file", str(path), *flags)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def tls_config(pki: Path, extra: str = "") -> str:
    return (f"tls_server_config:\n  cert_file: {pki}/server.crt\n"
            f"  key_file: {pki}/server.key\n{extra}")


def client_context(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(pki / f"{cert}.crt", pki / f"{cert}.key")
    return ctx


def get(port: int, path: str = "/metrics", ctx: ssl.SSLContext | None = None,
        user: str | None = None, password: str | None = None,
        timeout: float = 10) -> tuple[int, dict, str]:
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    headers = {}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        conn.close()


def test_tls_with_basic_auth(serve, pki):
    s = serve(tls_config(pki) + f"basic_auth_users:\n  prometheus: '{HASH}'\n"
              "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    ctx = client_context(pki)
    status, headers, body = get(s.port, ctx=ctx, user="prometheus", password=PASSWORD)
    assert status == 200
    scrape = parse_exposition(body)
    assert scrape["cisco_amp_connector_connected"][()] == 1
    assert headers["X-Content-Type-Options"] == "nosniff"
    for user, password in (("prometheus", "wrong"), ("nobody", PASSWORD), (None, None)):
        status, headers, body = get(s.port, ctx=ctx, user=user, password=password)
        assert status == 401, (user, password)
        assert headers["WWW-Authenticate"].startswith("Basic")
        assert "cisco_amp" not in body
    for path in ("/", "/-/healthy"):  # every path, as exporter-toolkit does
        assert get(s.port, path, ctx=ctx)[0] == 401
        assert get(s.port, path, ctx=ctx, user="prometheus", password=PASSWORD)[0] == 200
    assert any("tls=on basic_auth=on" in line for line in s.lines)


def test_plain_http_to_the_tls_port_is_refused(serve, pki):
    s = serve(tls_config(pki))
    status, _, body = get(s.port, ctx=None)
    assert status == 400 and "HTTPS server" in body
    # A client that speaks neither gets nothing either.
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
        raw.sendall(b"\x00garbage\r\n\r\n")
        assert b"cisco_amp" not in raw.recv(4096)
    assert get(s.port, ctx=client_context(pki))[0] == 200  # the server is fine


def test_server_certificate_is_verified_by_clients(serve, pki):
    s = serve(tls_config(pki))
    ctx = ssl.create_default_context(cafile=str(pki / "rogue-ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError):
        get(s.port, ctx=ctx)


def test_client_certificate_required_when_configured(serve, pki):
    s = serve(tls_config(pki, f"  client_auth_type: RequireAndVerifyClientCert\n"
                              f"  client_ca_file: {pki}/ca.crt\n"
                              "  client_allowed_sans: [prometheus]\n"))
    assert get(s.port, ctx=client_context(pki, "client"))[0] == 200
    for cert in (None, "rogue", "other-client"):  # none, wrong CA, SAN not allowed
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
            get(s.port, ctx=client_context(pki, cert))


def test_client_certificate_optional_but_verified(serve, pki):
    s = serve(tls_config(pki, f"  client_auth_type: VerifyClientCertIfGiven\n"
                              f"  client_ca_file: {pki}/ca.crt\n"))
    assert get(s.port, ctx=client_context(pki))[0] == 200
    assert get(s.port, ctx=client_context(pki, "client"))[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        get(s.port, ctx=client_context(pki, "rogue"))


def test_tls13_only(serve, pki):
    s = serve(tls_config(pki, "  min_version: TLS13\n"))
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        get(s.port, ctx=ctx)
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        assert conn.version() == "TLSv1.3"
        conn.sendall(b"GET /-/healthy HTTP/1.0\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.0 200")


def test_idle_clients_do_not_delay_scrapes_or_shutdown(serve, pki):
    s = serve(tls_config(pki) + f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    ctx = client_context(pki)
    assert get(s.port, ctx=ctx, user="prometheus", password=PASSWORD)[0] == 200  # warm
    idle = []
    for i in range(20):
        conn = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        if i % 2:
            conn.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then silence
        idle.append(conn)
    try:
        time.sleep(0.2)  # the server has accepted them all
        for _ in range(3):
            start = time.monotonic()
            status, _, _ = get(s.port, ctx=ctx, user="prometheus", password=PASSWORD,
                               timeout=5)
            elapsed = time.monotonic() - start
            assert status == 200 and elapsed < 1.0, elapsed
        # Concurrent scrapes too, while the idle clients still hold their connections.
        def one() -> float:
            start = time.monotonic()
            get(s.port, ctx=ctx, user="prometheus", password=PASSWORD, timeout=5)
            return time.monotonic() - start

        results = concurrently(one, 5)
        assert len(results) == 5 and max(results) < 1.5, results
        start = time.monotonic()
        assert s.stop() == 0  # SIGTERM: idle clients do not hold the shutdown
        assert time.monotonic() - start < 3.0
    finally:
        for conn in idle:
            conn.close()


def test_plain_server_idle_client_does_not_hold_shutdown(hosts):
    s = Server(hosts["no-connector"])
    try:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5):
            time.sleep(0.2)
            start = time.monotonic()
            assert s.stop() == 0
            assert time.monotonic() - start < 3.0
    finally:
        s.stop()
