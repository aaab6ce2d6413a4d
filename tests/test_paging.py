"""The whole path to a page, with the real binaries on loopback: two `amp-exporter serve`
on example hosts, scraped by the real `prometheus` evaluating our alert rules, which sends
to the real Alertmanager (Debian prometheus-alertmanager) configured as
alerts/alertmanager.yml, which calls a webhook this test serves, one path per receiver.
On one host the daemon dies, on the other ampcli stops answering: each page must reach
amp-pager, as severity critical, and nothing else must reach anyone.

The rules are the generated ones with the two connector-state alerts' `for:` cut to 5 s
(the shipped 3m and 10m would outlast any test): the shipped rules' timing is checked by
the promtool tests in alerts/tests, and that they go pending on these hosts by
test_prometheus_integration.py. The Alertmanager configuration is
alertmanager.alertmanager_config() with only the receivers' webhook URLs (pointed at this
test's server) and the route's group_wait and group_interval (1s instead of 30s and 5m)
changed: routes, matchers and inhibit rules are the shipped ones.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import LoopbackDaemon, builder, free_port, fresh_definitions, have
from test_alertmanager import BINARY, Alertmanager
from test_http import Server
from test_prometheus_integration import SILENT_FLAGS, Prometheus, kill_daemon, replace_ampcli

from amp_exporter.monitoring import alertmanager, alerts, config, yamlio

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not have("prometheus"), reason="prometheus binary missing"),
              pytest.mark.skipif(BINARY is None, reason="Alertmanager binary missing (Debian: "
                                 "apt install prometheus-alertmanager)")]

CONFIG = dataclasses.replace(config.DEFAULT, daemon_not_running_for="5s",
                             not_answering_for="5s")
DEAD, SILENT = "CiscoAmpConnectorDaemonNotRunning", "CiscoAmpConnectorNotAnswering"
PAGER = alertmanager.RECEIVERS["critical"]


class Webhooks:
    """An HTTP server on loopback that keeps every notification Alertmanager posts, with
    the path it came to (the receiver's name) and when it arrived (monotonic)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, dict]] = []
        self.lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hooks.lock:
                    hooks.received.append((arrived, self.path.strip("/"), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, receiver: str) -> str:
        return f"http://127.0.0.1:{self.port}/{receiver}"

    def notifications(self) -> list[tuple[float, str, dict]]:
        """(arrival, path, alert) for each alert of each notification."""
        with self.lock:
            return [(t, path, {**alert, "receiver": body["receiver"]})
                    for t, path, body in self.received for alert in body["alerts"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def alertmanager_file(tmp: Path, hooks: Webhooks) -> Path:
    am = alertmanager.alertmanager_config()
    for receiver in am["receivers"]:
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = hooks.url(receiver["name"])
    am["route"]["group_wait"] = am["route"]["group_interval"] = "1s"
    path = tmp / "alertmanager.yml"
    path.write_text(yamlio.dump(am, header=""))
    return path


class PagingAlertmanager(Alertmanager):
    """test_alertmanager's Alertmanager, with the configuration file given."""

    def __init__(self, tmp: Path, config_file: Path) -> None:
        port = free_port()
        LoopbackDaemon.__init__(
            self, [BINARY, f"--config.file={config_file}", f"--storage.path={tmp / 'am-data'}",
                   f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                   "--log.level=warn"],
            tmp / "alertmanager.log", port)


def test_a_dead_or_silent_connector_pages(host_copy, tmp_path):
    started = time.monotonic()
    rules = tmp_path / "rules.yml"
    rules.write_text(yamlio.dump({"groups": alerts.alert_groups(CONFIG)}))
    dead_root = fresh_definitions(host_copy("healthy-ebpf-btf"))
    silent_root = fresh_definitions(host_copy("healthy-ebpf-headers"))
    hooks = Webhooks()
    servers: list[Server] = []
    am = prom = None
    try:
        # --ampcli.cache 0 on both: each scrape asks ampcli, so the figures are the
        # intervals' and the exporters' own (the default 5 s cache would add up to 5 s).
        servers.append(Server(dead_root, "--ampcli.cache", "0"))
        servers.append(Server(silent_root, "--ampcli.cache", "0", *SILENT_FLAGS))
        dead, silent = (f"127.0.0.1:{s.port}" for s in servers)
        am = PagingAlertmanager(tmp_path, alertmanager_file(tmp_path, hooks))
        am.wait_ready()
        # The silent host's scrapes will take --ampcli.timeout (1 s): it is scraped every
        # 2 s with a 2 s timeout (see test_prometheus_integration.SLOW_SCRAPE).
        prom = Prometheus(tmp_path, [dead], slow=[silent], rule_files=[rules],
                          alertmanager=f"127.0.0.1:{am.port}")
        prom.wait("both hosts scraped healthy", lambda: len(prom.query(
            'cisco_amp_connector_state{state="answering"} == 1')) == 2)
        prom.wait("Prometheus knows its Alertmanager", lambda: prom.get(
            "/api/v1/alertmanagers")["data"]["activeAlertmanagers"])
        # ExporterAbsent goes pending at the first evaluation, before any scrape: gone at
        # the next one after the targets are up; then nothing at all
        prom.wait("no alert on the healthy hosts", lambda: prom.query("ALERTS") == [],
                  timeout=10)

        changed = {DEAD: kill_daemon(dead_root, "healthy-ebpf-btf")}
        changed[SILENT] = time.monotonic()
        replace_ampcli(silent_root, builder.ampcli(builder.HOSTS["ampcli-silent"]))
        instance = {DEAD: dead, SILENT: silent}

        seen: dict[tuple[str, str], float] = {}  # (alertname, alertstate): first seen
        delivered: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while len(delivered) < 2 and time.monotonic() < deadline:
            now = time.monotonic()
            for series in prom.query(f'ALERTS{{alertname=~"{DEAD}|{SILENT}"}}'):
                labels = series["metric"]
                assert labels["instance"] == instance[labels["alertname"]], labels
                seen.setdefault((labels["alertname"], labels["alertstate"]), now)
            for arrived, path, alert in hooks.notifications():
                name = alert["labels"]["alertname"]
                if path == PAGER and alert["status"] == "firing" and name in instance:
                    delivered.setdefault(name, arrived)
            time.sleep(0.05)
        time.sleep(1.5)  # a group_interval more: a stray or second notification comes too

        figures = {name: (seen.get((name, "pending")), seen.get((name, "firing")),
                          delivered.get(name)) for name in (DEAD, SILENT)}
        report = "\n".join(
            f"{name} ({'daemon killed' if name == DEAD else 'ampcli hangs'}): "
            + ", ".join(f"{step} {t - changed[name]:.2f} s" if t is not None else f"{step} -"
                        for step, t in zip(("pending", "firing", "webhook"), figures[name]))
            for name in (DEAD, SILENT))
        print("\n" + report)
        assert all(t is not None for f in figures.values() for t in f), report

        # each page came to amp-pager only, firing, critical, from its own host; and
        # nothing else came at all (the silent host's CollectorFailing waits 15m pending)
        got = hooks.notifications()
        assert {path for _, path, _ in got} == {PAGER}, got
        assert all(a["receiver"] == PAGER and a["status"] == "firing" for _, _, a in got), got
        assert sorted({(a["labels"]["alertname"], a["labels"]["instance"],
                        a["labels"]["severity"]) for _, _, a in got}) == sorted(
            (name, instance[name], "critical") for name in (DEAD, SILENT)), got
        pending_only = prom.query('ALERTS{alertname="CiscoAmpCollectorFailing"}')
        assert [(s["metric"]["instance"], s["metric"]["collector"], s["metric"]["alertstate"])
                for s in pending_only] == [(silent, "connector", "pending")], pending_only
        status, in_am = am.request("/api/v2/alerts")
        assert status == 200
        assert sorted((a["labels"]["alertname"], a["status"]["state"]) for a in in_am) == [
            (DEAD, "active"), (SILENT, "active")], in_am
        for name in (DEAD, SILENT):
            pending, firing, webhook = figures[name]
            assert changed[name] < pending < firing <= webhook, report
            assert pending - changed[name] < 10 and webhook - changed[name] < 20, report
        assert time.monotonic() - started < 45
    finally:
        for s in servers:
            s.proc.terminate()
        for daemon in (prom, am):
            if daemon is not None:
                daemon.stop()
        for s in servers:
            s.stop()
        hooks.stop()
