"""The HTTP side of `serve`: /metrics, a landing page, health endpoints, clean shutdown."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from amp_exporter import __version__
from amp_exporter.registry import Exporter

log = logging.getLogger("amp_exporter")

LANDING = """<!DOCTYPE html>
<html><head><title>amp-exporter</title></head>
<body><h1>amp-exporter {version}</h1>
<p>Prometheus exporter for the Cisco Secure Endpoint Linux connector.</p>
<ul><li><a href="{path}">{path}</a>: metrics</li>
<li><a href="/-/healthy">/-/healthy</a>: the process answers</li></ul>
<p>Collectors: {collectors}</p></body></html>
"""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # Graceful stop: serve_forever returns, in-flight requests finish (see serve()).
    block_on_close = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        log.debug("http request", extra={"client": self.client_address[0],
                                         "request": self.requestline})


def parse_listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def make_app(exporter: Exporter, telemetry_path: str):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    metrics_app = make_wsgi_app(registry)
    landing = LANDING.format(version=__version__, path=telemetry_path,
                             collectors=", ".join(c.name for c in exporter.collectors)).encode()

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == telemetry_path:
            return metrics_app(environ, start_response)
        if path in ("/-/healthy", "/-/ready"):
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"OK\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not Found\n"]

    return app


def serve(args: argparse.Namespace, exporter: Exporter, parser: argparse.ArgumentParser) -> int:
    if args.web_config:
        exporter.close()
        parser.error("--web.config.file: TLS and basic auth are not implemented yet; "
                     "put the exporter behind a TLS proxy meanwhile")
    try:
        host, port = parse_listen_address(args.listen)
    except ValueError as exc:
        exporter.close()
        parser.error(str(exc))
    server_class = _Server6 if ":" in host else _Server
    try:
        httpd = make_server(host or "", port, make_app(exporter, args.telemetry_path),
                            server_class=server_class, handler_class=_QuietHandler)
    except OSError as exc:
        exporter.close()
        log.error("cannot listen", extra={"address": args.listen, "err": str(exc)})
        return 1
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
                                 "collectors": ",".join(c.name for c in exporter.collectors),
                                 "rootfs": str(exporter.settings.paths.rootfs)})
    try:
        httpd.serve_forever(poll_interval=0.5)
    finally:
        httpd.server_close()  # waits for in-flight requests (block_on_close)
        exporter.close()
    return 0
