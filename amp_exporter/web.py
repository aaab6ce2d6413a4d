"""The HTTP side of `serve`: /metrics, a status page, health endpoints, clean shutdown,
and `--web.config.file` (TLS, basic auth, response headers: see webconfig.py, imported only
when a web config is given, so a plain server loads neither ssl nor yaml).

The server is a small HTTP/1.1 server of our own on socketserver, not wsgiref: wsgiref's
http.server pulls in email, http.client and html (~2.7 MiB, milliseconds of start-up),
speaks HTTP/1.0, closes every connection and starts a thread per request. Here a thread
serves a *connection*, and connections are kept alive (Prometheus keeps its own open from
scrape to scrape), so a scrape costs no accept, no thread start and, with TLS, no
handshake. The apps are WSGI callables; the server gives them the part of the environ they
read (no request bodies are read).

Deadlines: a new connection has REQUEST_TIMEOUT to send its whole first request head (a
client that connects and never speaks costs one thread for at most that); a kept-alive one
has IDLE_TIMEOUT to start its next request, then REQUEST_TIMEOUT to finish its head. TLS is
negotiated in the connection's own thread with HANDSHAKE_TIMEOUT, never in accept(): no
client delays another's scrape.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import logging
import re
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Optional
from urllib.parse import unquote

from amp_exporter.exposition import CONTENT_TYPE, render
from amp_exporter.scrape import Exporter

if TYPE_CHECKING:
    import ssl

    from amp_exporter import webconfig

log = logging.getLogger("amp_exporter")

# A TLS client has this long to finish its handshake, an HTTP client to send a request head.
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
# A kept-alive connection may wait this long for its next request: longer than the scrape
# intervals in use (15 s to 2 min), so each scrape reuses the connection. Prometheus closes
# its idle ones after 5 min and retries a GET whose reused connection was closed under it.
IDLE_TIMEOUT = 120.0
# On SIGTERM, scrapes in flight get this long to be answered (an ampcli run is bounded by
# --ampcli.timeout, default 5 s); within systemd's TimeoutStopSec=30s and Kubernetes' 30 s.
SHUTDOWN_GRACE = 15.0
# A request head's limits (Prometheus sends ~300 bytes): longer lines or more headers are
# refused (414/431) and the connection closed.
MAX_LINE = 8192
MAX_HEADERS = 100
MAX_HEAD = 65536
# A request body is never used; one up to this size is read and dropped so the connection
# can be kept, a bigger (or chunked) one ends the connection after the answer.
MAX_DISCARDED_BODY = 65536
# Closing with request bytes unread makes the kernel send a reset, which can destroy the
# answer in flight: before such a close, read and drop what comes for this long.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20

PLAIN_HTTP_TO_TLS = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
ALLOWED_METHODS = ("GET", "HEAD")
TEXT = "text/plain; charset=utf-8"

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_CONTROL = re.compile(rb"[\x00-\x20\x7f]")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Headers the server writes itself, whatever an app says.
_SERVER_HEADERS = frozenset(("content-length", "connection", "date", "transfer-encoding"))


def _http_date() -> str:
    """Now, as the Date header wants it (email.utils would import the email package)."""
    t = time.gmtime()
    return (f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def _linger(sock: socket.socket) -> None:
    """Before closing a connection with request bytes still unread: end our side, then read
    and drop what the client still sends for a moment. A close with unread bytes is a
    reset, and a reset can overtake the answer on its way."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_WR)  # not SSLSocket's: no unwrap
        deadline = time.monotonic() + LINGER_SECONDS
        dropped = 0
        while dropped < LINGER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            data = sock.recv(65536)
            if not data:
                break
            dropped += len(data)


class _Refused(Exception):
    """A request answered with STATUS (and DETAIL as its body) and its connection closed."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class _Connection(socketserver.BaseRequestHandler):
    """One client connection: its requests read and answered in turn until the client
    closes or asks to, goes quiet past a deadline, sends what cannot be kept alive after,
    or the server stops."""

    server: _Server

    def setup(self) -> None:
        self.client = self.client_address[0]
        self.buffer = bytearray()  # received, not yet parsed: a pipelined request's start
        self.version = "HTTP/1.1"  # of the request being answered; errors before it is known
        self.request_line = ""
        self.unread = False  # request bytes may still be coming that nobody will read
        with contextlib.suppress(OSError):
            # One write per answer, but TLS writes a record per 16 KiB: no Nagle wait
            # between them for the client's delayed ACK (Go servers set it too).
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        try:
            first = True
            while self._serve_one(first):
                first = False
        except _Refused as refused:
            with contextlib.suppress(OSError):
                self._send(refused.status, [("Content-Type", TEXT)],
                           refused.detail.encode() + b"\n", keep_alive=False)
            self._log(refused.status)
            self.unread = True
        except OSError as exc:  # a reset, a timeout, a TLS error: nobody left to answer
            log.debug("http connection ended", extra={"client": self.client, "err": str(exc)})
        except Exception:  # a bug here must cost this connection only, and say why
            log.error("http connection failed", extra={"client": self.client},
                      exc_info=True)
        if self.unread:
            _linger(self.request)

    def _serve_one(self, first: bool) -> bool:
        """Read one request and answer it; whether the connection stays open for the next."""
        head = self._read_head(first)
        if head is None:
            return False
        environ, keep_alive = self._parse(head)
        method = environ["REQUEST_METHOD"]
        if method not in ALLOWED_METHODS:
            status, headers, body = ("405 Method Not Allowed",
                                     [("Content-Type", TEXT),
                                      ("Allow", ", ".join(ALLOWED_METHODS))],
                                     b"Method Not Allowed\n")
        else:
            status, headers, body = self._call_app(environ)
        # A scrape in flight when shutdown began is answered, and told it is the last.
        keep_alive = keep_alive and not self.server.stopping
        self._send(status, headers, body, keep_alive, head_only=method == "HEAD")
        self._log(status)
        return keep_alive

    # -- reading -----------------------------------------------------------------------

    def _read_head(self, first: bool) -> Optional[bytes]:
        """The next request's head (its request line and header lines, without the blank
        line that ends it), taken from the buffer; None when the client closed or stayed
        quiet between requests. _Refused for a head over the limits; socket.timeout for one
        not finished in time."""
        buffer = self.buffer
        # A new connection's first head must be whole within REQUEST_TIMEOUT; a kept-alive
        # one may idle for IDLE_TIMEOUT, then has REQUEST_TIMEOUT from its first byte.
        deadline = time.monotonic() + (REQUEST_TIMEOUT if first else IDLE_TIMEOUT)
        idle = not first
        scanned = 0  # bytes of the buffer already searched for the head's end
        while True:
            if scanned == 0 and buffer[:1] in (b"\r", b"\n"):
                del buffer[:len(buffer) - len(buffer.lstrip(b"\r\n"))]  # RFC 9112 2.2
            if buffer:
                end, after = self._head_end(max(0, scanned - 2))
                if end >= 0:
                    head = bytes(buffer[:end])
                    del buffer[:after]
                    return head
                scanned = len(buffer)
                self._check_partial_head()
                if idle:  # the next request has begun
                    idle = False
                    deadline = min(deadline, time.monotonic() + REQUEST_TIMEOUT)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if idle or not buffer:
                    return None  # quiet since the last answer (or since connecting)
                raise socket.timeout("request head not finished in time")
            self.request.settimeout(remaining)
            try:
                data = self.request.recv(65536)
            except socket.timeout:
                if idle or not buffer:
                    return None
                raise
            if not data:
                return None  # closed (or shut down by drop_idle), maybe mid-request
            buffer += data

    def _head_end(self, start: int) -> tuple[int, int]:
        """Where the head ends in the buffer (its blank line, CRLF or bare LF) and where
        what follows it begins; (-1, -1) while it has not arrived."""
        crlf = self.buffer.find(b"\n\r\n", start)
        lf = self.buffer.find(b"\n\n", start, crlf if crlf >= 0 else len(self.buffer))
        if lf >= 0:
            return lf, lf + 2
        if crlf >= 0:
            return crlf, crlf + 3
        return -1, -1

    def _check_partial_head(self) -> None:
        """Refuse a head over its limits, or with a bad request line, while it is still
        arriving: a client that sent garbage (a TLS hello to the plain port, say) is told
        at once, not after REQUEST_TIMEOUT."""
        buffer = self.buffer
        line_end = buffer.find(b"\n")
        if line_end >= 0:
            self._request_line(bytes(buffer[:line_end]))
        elif not _TOKEN.match(buffer, 0, 1):  # a request line starts with its method
            raise _Refused("400 Bad Request", "malformed request line")
        line_start = buffer.rfind(b"\n") + 1
        if len(buffer) - line_start > MAX_LINE:
            if line_start == 0:
                raise _Refused("414 URI Too Long", "request line too long")
            raise _Refused("431 Request Header Fields Too Large", "header line too long")
        if len(buffer) > MAX_HEAD or buffer.count(b"\n") > MAX_HEADERS + 1:
            raise _Refused("431 Request Header Fields Too Large", "too many headers")

    def _request_line(self, line: bytes) -> tuple[bytes, bytes, bool]:
        """Method, target and whether it is HTTP/1.0, of a request line."""
        line = line.removesuffix(b"\r")
        self.request_line = line[:200].decode("latin-1")
        parts = line.split(b" ")
        if len(parts) != 3:
            raise _Refused("400 Bad Request", "malformed request line")
        method, target, version = parts
        match = _VERSION.fullmatch(version)
        if not match or not _TOKEN.fullmatch(method) or not target \
                or _CONTROL.search(target):
            raise _Refused("400 Bad Request", "malformed request line")
        if match.group(1) != b"1":
            raise _Refused("505 HTTP Version Not Supported", "HTTP/1.0 and HTTP/1.1 only")
        http10 = match.group(2) == b"0"
        self.version = "HTTP/1.0" if http10 else "HTTP/1.1"
        return method, target, http10

    def _parse(self, head: bytes) -> tuple[dict, bool]:
        """The environ of a request head, and whether its connection may be kept."""
        lines = head.split(b"\n")
        if len(lines) > MAX_HEADERS + 1:
            raise _Refused("431 Request Header Fields Too Large", "too many headers")
        if len(lines[0]) > MAX_LINE:
            raise _Refused("414 URI Too Long", "request line too long")
        method, target, http10 = self._request_line(lines[0])
        path, _, query = self._origin_form(target).decode("latin-1").partition("?")
        if "%" in path:
            path = unquote(path, "latin-1")
        environ = {"REQUEST_METHOD": method.decode("ascii"), "SCRIPT_NAME": "",
                   "PATH_INFO": path, "QUERY_STRING": query, "SERVER_PROTOCOL": self.version,
                   "REMOTE_ADDR": self.client}
        for raw in lines[1:]:
            raw = raw.removesuffix(b"\r")
            if len(raw) > MAX_LINE:
                raise _Refused("431 Request Header Fields Too Large", "header line too long")
            name, colon, value = raw.partition(b":")
            # No folded lines, no space before the colon: both are how requests get
            # smuggled past a proxy that reads them differently (RFC 9112 5.1, 5.2).
            if not colon or not _TOKEN.fullmatch(name):
                raise _Refused("400 Bad Request", "malformed header line")
            key = name.decode("ascii").upper().replace("-", "_")
            if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
                key = "HTTP_" + key
            value = value.strip(b" \t").decode("latin-1")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        connection = {t.strip().lower() for t in environ.get("HTTP_CONNECTION", "").split(",")}
        keep_alive = "keep-alive" in connection if http10 else "close" not in connection
        return environ, self._skip_body(environ) and keep_alive

    @staticmethod
    def _origin_form(target: bytes) -> bytes:
        """The path and query of a request target (an absolute URL, as sent to proxies,
        counts by its path)."""
        if target.startswith(b"/"):
            return target
        scheme, sep, rest = target.partition(b"://")
        if sep and scheme.lower() in (b"http", b"https"):
            slash = rest.find(b"/")
            return rest[slash:] if slash >= 0 else b"/"
        if target == b"*":  # OPTIONS *: refused by its method
            return b"*"
        raise _Refused("400 Bad Request", "malformed request target")

    def _skip_body(self, environ: dict) -> bool:
        """Read and drop a small request body; False when there is one we will not read
        (chunked, too big, or behind Expect: 100-continue), so the connection must end."""
        length = environ.get("CONTENT_LENGTH", "")
        if length and not (length.isascii() and length.isdigit()):
            raise _Refused("400 Bad Request", "malformed Content-Length")
        if "HTTP_TRANSFER_ENCODING" in environ:
            self.unread = True
            return False
        size = int(length or 0)
        if not size:
            return True
        if size > MAX_DISCARDED_BODY or "HTTP_EXPECT" in environ:
            self.unread = True
            return False
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while len(self.buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("request body not sent in time")
            self.request.settimeout(remaining)
            data = self.request.recv(65536)
            if not data:
                raise ConnectionResetError("closed in the request body")
            self.buffer += data
        del self.buffer[:size]
        return True

    # -- answering ---------------------------------------------------------------------

    def _call_app(self, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        """The app's status, headers and whole body; a 500 (the reason in the log, never
        in the answer) if it fails."""
        started: list = []
        written: list[bytes] = []

        def start_response(status: str, headers: list, exc_info=None):
            if exc_info and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [status, headers]
            return written.append

        try:
            result = self.server.app(environ, start_response)
            try:
                body = b"".join(written) + b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            if not started:
                raise RuntimeError("the app did not call start_response")
            return started[0], started[1], body
        except Exception as exc:
            log.error("http request failed", extra={"client": self.client,
                                                    "request": self.request_line,
                                                    "err": str(exc)}, exc_info=True)
            return "500 Internal Server Error", [("Content-Type", TEXT)], b"Internal error\n"

    def _send(self, status: str, headers: list[tuple[str, str]], body: bytes,
              keep_alive: bool, head_only: bool = False) -> None:
        """The whole answer in one write; Content-Length always (HEAD: the body's, with no
        body), and Connection when it is not the version's default."""
        lines = [f"{self.version} {status}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers
                  if name.lower() not in _SERVER_HEADERS]
        lines.append(f"Content-Length: {len(body)}\r\nDate: {_http_date()}\r\n")
        if not keep_alive:
            lines.append("Connection: close\r\n")
        elif self.version == "HTTP/1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        # sendall's timeout bounds the whole answer: a client that stops reading loses it.
        self.request.settimeout(REQUEST_TIMEOUT)
        self.request.sendall(head if head_only else head + body)

    def _log(self, status: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("http request", extra={"client": self.client,
                                             "request": self.request_line,
                                             "status": status.partition(" ")[0]})


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    # Daemon threads, so a client stuck past SHUTDOWN_GRACE cannot hold the exit; which
    # also means server_close() does not join them: serve() waits for the open
    # connections itself (wait_closed).
    daemon_threads = True
    # Go servers listen with SOMAXCONN; socketserver's 5 makes a burst of scrapes (a
    # Prometheus HA pair plus a restart of both) wait out SYN retransmits, seconds each.
    request_queue_size = socket.SOMAXCONN
    allow_reuse_address = True  # a restart binds at once, TIME_WAIT or not

    def __init__(self, server_address, handler_class=_Connection,
                 bind_and_activate: bool = True) -> None:
        self.app: Optional[WSGIApp] = None
        self.stopping = False  # answers say Connection: close, no request is read after
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._closed = threading.Condition(self._open_lock)
        super().__init__(server_address, handler_class, bind_and_activate)

    def set_app(self, app: WSGIApp) -> None:
        self.app = app

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

    def handle_error(self, request, client_address):
        # socketserver's prints a traceback to stderr; ours go to the log
        log.error("http connection failed", extra={"client": client_address[0]},
                  exc_info=True)

    def wait_closed(self, timeout: float) -> bool:
        """On shutdown: wait until every connection is answered and closed; False if some
        were still open when TIMEOUT ran out."""
        with self._open_lock:
            return self._closed.wait_for(lambda: not self._open, timeout)

    def drop_idle(self) -> None:
        """On shutdown: end the reading side of every open connection. A client that sent
        nothing, is mid-handshake or idles between keep-alive requests gets EOF at once; a
        request already read still gets its answer (with Connection: close), so the wait
        is only for real work."""
        self.stopping = True
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
                _linger(request)
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
            return conn
        except (OSError, ValueError) as exc:  # ssl.SSLError and socket.timeout are OSErrors
            log.debug("TLS handshake failed", extra={"client": client, "err": str(exc)})
            if conn is not None:
                self.shutdown_request(conn)
            return None


class _TLSServer6(_TLSServer):
    address_family = socket.AF_INET6


def parse_listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def metrics_app(exporter: Exporter) -> WSGIApp:
    """/metrics in the text format (exposition.py), gzipped when the client asks
    (Prometheus does)."""

    def app(environ, start_response):
        body = render(exporter.collect())
        headers = [("Content-Type", CONTENT_TYPE), ("Vary", "Accept-Encoding")]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            # Level 1: a 25 KB scrape compresses to ~5.2 KB in 0.09 ms, where level 6 gives
            # ~4.7 KB in 0.24 ms. Every 15 s on every host, the CPU counts more than 0.5 KB.
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app


def make_app(exporter: Exporter, telemetry_path: str) -> WSGIApp:
    metrics = metrics_app(exporter)
    started = time.time()  # the page's uptime when /proc/self cannot say

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == telemetry_path:
            return metrics(environ, start_response)
        if path in ("/-/healthy", "/-/ready"):
            start_response("200 OK", [("Content-Type", TEXT)])
            return [b"OK\n"]
        if path == "/":  # the status page: one collection, bounded as a scrape is
            # Imported at the first visit: a server only scraped never loads it (nor html).
            from amp_exporter import statuspage

            page = statuspage.page(exporter, telemetry_path, started)
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                      ("Cache-Control", "no-store")])
            return [page]
        start_response("404 Not Found", [("Content-Type", TEXT)])
        return [b"Not Found\n"]

    return app


def secure(app: WSGIApp, headers=(), auth: Optional[webconfig.BasicAuth] = None) -> WSGIApp:
    """The web config's side of every response: basic auth (all paths, as exporter-toolkit
    does) and the configured response headers."""
    headers = list(headers)

    def wrapped(environ, start_response):
        def start(status, response_headers, exc_info=None):
            return start_response(status, [*response_headers, *headers], exc_info)

        if auth and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            start("401 Unauthorized", [("Content-Type", TEXT),
                                       ("WWW-Authenticate", 'Basic realm="amp-exporter"')])
            return [b"Unauthorized\n"]
        return app(environ, start)

    return wrapped


def load_web_config(path: str):
    """(WebConfig, BasicAuth or None); WebConfigError naming the field when unusable."""
    from amp_exporter import webconfig  # ssl and yaml: only for servers with a web config

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
    tls, headers, auth = None, (), None
    if args.web_config:
        from amp_exporter import webconfig

        try:
            config, auth = load_web_config(args.web_config)
        except webconfig.WebConfigError as exc:
            exporter.close()
            parser.error(f"--web.config.file {args.web_config}: {exc}")  # exits 2
        for warning in config.warnings:
            log.warning("web config", extra={"file": args.web_config, "detail": warning})
        tls, headers = config.tls, config.headers
    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        exporter.close()
        parser.error(str(exc))
    if tls:
        server_class = _TLSServer6 if ":" in host else _TLSServer
    else:
        server_class = _Server6 if ":" in host else _Server
    app = make_app(exporter, args.telemetry_path)
    if headers or auth:
        app = secure(app, headers, auth)
    try:
        httpd = server_class((host or "", port))
    except OSError as exc:
        exporter.close()
        log.error("cannot listen", extra={"address": args.listen, "err": str(exc)})
        return 1
    httpd.set_app(app)
    if tls:
        def reload_failed(exc):
            log.error("TLS files changed but do not load; serving the previous ones",
                      extra={"file": args.web_config, "err": str(exc)})

        httpd.tls_contexts = webconfig.TLSContexts(tls, reload_failed)
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
                                 "tls": "on" if tls else "off",
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
