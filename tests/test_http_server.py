"""web.py's HTTP server in this process, on loopback, with its deadlines shortened to
fractions of a second: idle keep-alive connections, silent and trickling clients, an app
that fails, bodies it will not read, shutdown with a request in flight, IPv6; and that a
plain `serve` loads neither ssl, yaml nor wsgiref."""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time

import pytest
from conftest import have
from test_tls_auth import client_context, pki  # noqa: F401  (pki: a fixture)

from amp_exporter import web

REQUEST_TIMEOUT = 0.5
IDLE_TIMEOUT = 1.0


@pytest.fixture
def start(monkeypatch):
    """start(app) -> a running web._Server for the WSGI app, its deadlines shortened."""
    monkeypatch.setattr(web, "REQUEST_TIMEOUT", REQUEST_TIMEOUT)
    monkeypatch.setattr(web, "IDLE_TIMEOUT", IDLE_TIMEOUT)
    monkeypatch.setattr(web, "LINGER_SECONDS", 0.2)
    running: list[tuple[web._Server, threading.Thread]] = []

    def serve(app, server_class=web._Server, host: str = "127.0.0.1") -> web._Server:
        httpd = server_class((host, 0))
        httpd.set_app(app)
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        running.append((httpd, thread))
        return httpd

    yield serve
    for httpd, thread in running:
        httpd.shutdown()
        thread.join()
        httpd.server_close()
        httpd.drop_idle()
        assert httpd.wait_closed(5)


def ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"OK\n"]


def connect(httpd: web._Server) -> socket.socket:
    return socket.create_connection(httpd.server_address[:2], timeout=5)


def seconds_until_closed(conn: socket.socket, limit: float = 5) -> float:
    """How long until the server closes CONN (what it sends meanwhile is dropped)."""
    start = time.monotonic()
    conn.settimeout(limit)
    try:
        while conn.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        return limit
    return time.monotonic() - start


def test_kept_alive_connection_is_closed_once_idle_past_the_timeout(start):
    httpd = start(ok)
    with connect(httpd) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert conn.recv(17) == b"HTTP/1.1 200 OK\r\n"
        assert IDLE_TIMEOUT * 0.8 < seconds_until_closed(conn) < IDLE_TIMEOUT + 1.5


def test_a_client_that_sends_nothing_costs_at_most_the_request_timeout(start):
    httpd = start(ok)
    with connect(httpd) as conn:
        assert REQUEST_TIMEOUT * 0.8 < seconds_until_closed(conn) < REQUEST_TIMEOUT + 1.5
    assert httpd.wait_closed(2)  # and its thread is gone


def test_a_trickling_client_is_cut_at_the_request_deadline(start):
    # A deadline for the whole head, not per recv: a client sending a byte now and then
    # would otherwise hold its thread for ever.
    httpd = start(ok)
    with connect(httpd) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\n")
        began = time.monotonic()
        closed_after = None
        while time.monotonic() - began < 5:
            try:
                conn.sendall(b"X: y\r\n")
            except OSError:  # reset or broken pipe: the server has closed
                closed_after = time.monotonic() - began
                break
            if select.select([conn], [], [], 0.1)[0]:
                try:
                    if conn.recv(65536) == b"":
                        closed_after = time.monotonic() - began
                        break
                except ConnectionResetError:
                    closed_after = time.monotonic() - began
                    break
        assert closed_after is not None and closed_after < REQUEST_TIMEOUT + 1.0


def test_a_failing_app_gets_500_without_its_traceback_and_the_connection_goes_on(start):
    calls = []

    def flaky(environ, start_response):
        calls.append(environ["PATH_INFO"])
        if len(calls) == 1:
            raise RuntimeError("secret detail of the failure")
        return ok(environ, start_response)

    httpd = start(flaky)
    conn = http.client.HTTPConnection(*httpd.server_address[:2], timeout=5)
    try:
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read()
        assert r.status == 500 and b"secret" not in body and b"Traceback" not in body
        sock = conn.sock
        conn.request("GET", "/-/healthy")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"OK\n") and conn.sock is sock
    finally:
        conn.close()
    assert calls == ["/metrics", "/-/healthy"]


def test_head_length_is_the_get_length(start):
    def sized(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1")])
        return [b"x" * 1234]  # the server's Content-Length, not the app's wrong one

    httpd = start(sized)
    with connect(httpd) as conn:
        conn.sendall(b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 1234" in head and b"Content-Length: 1\r\n" not in head
    get_head, _, get_body = rest.partition(b"\r\n\r\n")
    assert get_head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 1234" in get_head
    assert get_body == b"x" * 1234


@pytest.mark.parametrize("request_head", [
    b"POST / HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_a_body_not_read_is_answered_then_the_connection_closed(start, request_head):
    httpd = start(ok)
    with connect(httpd) as conn:
        conn.sendall(request_head + b"a" * 200_000)  # more still to come, never read
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert data.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"Connection: close\r\n" in data


def test_shutdown_answers_the_request_in_flight_and_drops_the_idle(start, monkeypatch):
    monkeypatch.setattr(web, "IDLE_TIMEOUT", 30.0)  # so only the shutdown can end the idle
    entered, release = threading.Event(), threading.Event()

    def slow(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            entered.set()
            release.wait(5)
        return ok(environ, start_response)

    httpd = start(slow)
    idle = http.client.HTTPConnection(*httpd.server_address[:2], timeout=5)
    idle.request("GET", "/")
    assert idle.getresponse().read() == b"OK\n"  # now kept alive, idle
    with connect(httpd) as busy:
        busy.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        assert entered.wait(5)
        httpd.shutdown()  # what serve() does on SIGTERM
        httpd.server_close()
        httpd.drop_idle()
        idle.sock.settimeout(1)
        assert idle.sock.recv(1) == b""  # the idle one is dropped at once
        assert not httpd.wait_closed(0.2)  # the busy one is waited for
        release.set()
        data = b""
        while chunk := busy.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"OK\n")
        assert b"Connection: close\r\n" in data  # its client knows not to send more
        assert httpd.wait_closed(5)
    idle.close()


def test_listens_on_ipv6(start):
    try:
        httpd = start(ok, web._Server6, "::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    conn = http.client.HTTPConnection("::1", httpd.server_address[1], timeout=5)
    try:
        for _ in range(2):
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"OK\n"
    finally:
        conn.close()


@pytest.mark.skipif(not have("openssl"), reason="openssl CLI missing")
def test_tls_connection_is_kept_alive_and_dropped_idle_at_shutdown(start, pki):  # noqa: F811
    from amp_exporter import webconfig

    tls = webconfig.TLSConfig(cert_file=str(pki / "server.crt"),
                              key_file=str(pki / "server.key"))

    class TLSServer(web._TLSServer):
        tls_contexts = webconfig.TLSContexts(tls)

    httpd = start(ok, TLSServer)
    conn = http.client.HTTPSConnection("127.0.0.1", httpd.server_address[1], timeout=5,
                                       context=client_context(pki))
    try:
        sockets = set()
        for _ in range(3):
            conn.request("GET", "/")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b"OK\n") and not r.will_close
            sockets.add(id(conn.sock))
        assert len(sockets) == 1  # one TLS session for all three: one handshake
        httpd.shutdown()
        httpd.server_close()
        httpd.drop_idle()
        conn.sock.settimeout(1)
        assert conn.sock.recv(1) == b""  # idle between requests: dropped at once
        assert httpd.wait_closed(2)
    finally:
        conn.close()
