"""The HTTP side of `serve`: /metrics, a landing page, health endpoints, clean shutdown,
and `--web.config.file` (TLS, basic auth, response headers: see webconfig.py).

TLS is negotiated in each connection's own thread, with a deadline, never in accept():
a client that connects and never speaks (or speaks plain HTTP) costs one thread for at
most HANDSHAKE_TIMEOUT seconds and delays no other scrape.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import logging
import signal
import socket
import ssl
import threading
from socketserver import ThreadingMixIn
from typing import Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from amp_exporter import __version__, webconfig
from amp_exporter.exposition import CONTENT_TYPE, render
from amp_exporter.scrape import Exporter

log = logging.getLogger("amp_exporter")

LANDING = """<!DOCTYPE html>
<html><head><title>amp-exporter</title></head>
<body><h1>amp-exporter {version}</h1>
<p>Prometheus exporter for the Cisco Secure Endpoint Linux connector.</p>
<ul><li><a href="{path}">{path}</a>: metrics</li>
<li><a href="/-/healthy">/-/healthy</a>: the process answers</li>
<li><a href="/-/ready">/-/ready</a>: ready to serve scrapes</li></ul>
<p>Collectors: {collectors}</p></body></html>
"""


# A TLS client has this long to finish its handshake, an HTTP client to send its request.
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
# On SIGTERM, scrapes in flight get this long to be answered (an ampcli run is bounded by
# --ampcli.timeout, default 5 s); within systemd's TimeoutStopSec=30s and Kubernetes' 30 s.
SHUTDOWN_GRACE = 15.0
PLAIN_HTTP_TO_TLS = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")


class _Server(ThreadingMixIn, WSGIServer):
    # Daemon threads, so a client stuck past SHUTDOWN_GRACE cannot hold the exit; which
    # also means server_close() does not join them: serve() waits for the open
    # connections itself (wait_closed).
    daemon_threads = True
    # Go servers listen with SOMAXCONN; socketserver's 5 makes a burst of scrapes (a
    # Prometheus HA pair plus a restart of both) wait out SYN retransmits, seconds each.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, *args, **kwargs) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._closed = threading.Condition(self._open_lock)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def _replace_open(self, old: socket.socket, new: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(old)
            self._open.add(new)

    def shutdown_request(self, request):
        super().shutdown_request(request)
        with self._open_lock:
            self._open.discard(request)
            self._closed.notify_all()

    def wait_closed(self, timeout: float) -> bool:
        """On shutdown: wait until every connection is answered and closed; False if some
        were still open when TIMEOUT ran out."""
        with self._open_lock:
            return self._closed.wait_for(lambda: not self._open, timeout)

    def drop_idle(self) -> None:
        """On shutdown: end the reading side of every open connection. A client that sent
        nothing (or is mid-handshake) gets EOF at once; a request already read still gets
        its answer, so the join in server_close waits only for real work."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RD)  # not SSLSocket's: keep TLS up


class _Server6(_Server):
    address_family = socket.AF_INET6


class _TLSServer(_Server):
    """TLS per connection, in the connection's worker thread, with a deadline."""

    tls_contexts: webconfig.TLSContexts

    def finish_request(self, request, client_address):
        conn = self._handshake(request, client_address)
        if conn is None:
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            self.shutdown_request(conn)

    def _handshake(self, request: socket.socket, client_address) -> Optional[ssl.SSLSocket]:
        client = client_address[0]
        conn = None
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            first = request.recv(1, socket.MSG_PEEK)
            if not first:
                return None
            if first != b"\x16":  # not a TLS handshake record: say so, as Go servers do
                log.debug("plain HTTP on the TLS port", extra={"client": client})
                request.sendall(PLAIN_HTTP_TO_TLS)
                return None
            conn = self.tls_contexts.get().wrap_socket(request, server_side=True,
                                                       do_handshake_on_connect=False)
            self._replace_open(request, conn)
            conn.do_handshake()
            tls = self.tls_contexts.tls
            if not tls.allowed(conn.getpeercert()):
                log.warning("client certificate not in client_allowed_sans",
                            extra={"client": client})
                self.shutdown_request(conn)
                return None
            conn.settimeout(REQUEST_TIMEOUT)
            return conn
        except (OSError, ValueError) as exc:  # ssl.SSLError and socket.timeout are OSErrors
            log.debug("TLS handshake failed", extra={"client": client, "err": str(exc)})
            if conn is not None:
                self.shutdown_request(conn)
            return None


class _TLSServer6(_TLSServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT

    def log_message(self, format, *args):
        log.debug("http request", extra={"client": self.client_address[0],
                                         "request": self.requestline})


def parse_listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def metrics_app(exporter: Exporter):
    """/metrics in the text format, gzipped when the client asks (Prometheus does). Our own
    writer (exposition.py): prometheus_client's spends a third of a scrape validating names
    that are fixed at declaration."""

    def app(environ, start_response):
        body = render(exporter.collect())
        headers = [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=6)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]

    return app


def make_app(exporter: Exporter, telemetry_path: str):
    metrics = metrics_app(exporter)
    landing = LANDING.format(version=__version__, path=telemetry_path,
                             collectors=", ".join(c.name for c in exporter.collectors)).encode()

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == telemetry_path:
            return metrics(environ, start_response)
        if path in ("/-/healthy", "/-/ready"):
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"OK\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found\n"]

    return app


def secure(app, headers=(), auth: Optional[webconfig.BasicAuth] = None):
    """The web config's side of every response: basic auth (all paths, as exporter-toolkit
    does) and the configured response headers."""
    headers = list(headers)

    def wrapped(environ, start_response):
        def start(status, response_headers, exc_info=None):
            return start_response(status, [*response_headers, *headers], exc_info)

        if auth and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            start("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                       ("WWW-Authenticate", 'Basic realm="amp-exporter"')])
            return [b"Unauthorized\n"]
        return app(environ, start)

    return wrapped


def load_web_config(path: str):
    """(WebConfig, BasicAuth or None); WebConfigError naming the field when unusable."""
    config = webconfig.load(path)
    auth = None
    if config.users:
        try:
            auth = webconfig.BasicAuth(config.users)
        except ImportError as exc:
            raise webconfig.WebConfigError("basic_auth_users: the bcrypt module is missing "
                                           f"({exc})") from exc
    return config, auth


def serve(args: argparse.Namespace, exporter: Exporter, parser: argparse.ArgumentParser) -> int:
    config, auth = webconfig.WebConfig(), None
    if args.web_config:
        try:
            config, auth = load_web_config(args.web_config)
        except webconfig.WebConfigError as exc:
            exporter.close()
            parser.error(f"--web.config.file {args.web_config}: {exc}")  # exits 2
        for warning in config.warnings:
            log.warning("web config", extra={"file": args.web_config, "detail": warning})
    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        exporter.close()
        parser.error(str(exc))
    if config.tls:
        server_class = _TLSServer6 if ":" in host else _TLSServer
    else:
        server_class = _Server6 if ":" in host else _Server
    app = make_app(exporter, args.telemetry_path)
    if config.headers or auth:
        app = secure(app, config.headers, auth)
    try:
        httpd = make_server(host or "", port, app, server_class=server_class,
                            handler_class=_QuietHandler)
    except OSError as exc:
        exporter.close()
        log.error("cannot listen", extra={"address": args.listen, "err": str(exc)})
        return 1
    if config.tls:
        def reload_failed(exc):
            log.error("TLS files changed but do not load; serving the previous ones",
                      extra={"file": args.web_config, "err": str(exc)})

        httpd.tls_contexts = webconfig.TLSContexts(config.tls, reload_failed)
    stopping = threading.Event()

    def stop(signum, _frame):
        if not stopping.is_set():
            stopping.set()
            log.info("shutting down", extra={"signal": signal.Signals(signum).name})
            threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bound = httpd.server_address
    log.info("listening", extra={"address": f"{bound[0]}:{bound[1]}",
                                 "tls": "on" if config.tls else "off",
                                 "basic_auth": "on" if auth else "off",
                                 "collectors": ",".join(c.name for c in exporter.collectors),
                                 "rootfs": str(exporter.settings.paths.rootfs)})
    try:
        httpd.serve_forever(poll_interval=0.5)
    finally:
        httpd.server_close()  # no new connections
        httpd.drop_idle()  # idle clients get EOF; requests already read are answered
        if not httpd.wait_closed(SHUTDOWN_GRACE):
            log.warning("connections still open at shutdown; exiting anyway",
                        extra={"grace_seconds": SHUTDOWN_GRACE})
        exporter.close()
    return 0
