"""The status page at `/`: the host's health as `amp-exporter check` sees it, for a person
with a browser (a phone, often) rather than a shell on the host.

It renders check.report, the same data `check` prints, so the verdict, the faults, their
causes and the steps are decided in one place. A request runs the collectors once, as a
scrape does, and is bounded as a scrape is (--ampcli.timeout). Plain HTML5: no script, no
outside resource (CSS inline), every string from the host escaped.
"""

from __future__ import annotations

import functools
import time
from html import escape
from typing import Optional

from amp_exporter import __version__
from amp_exporter.catalog import CONNECTOR_STATES_BY_NAME
from amp_exporter.check import Report, report
from amp_exporter.scrape import Exporter

# Verdict word -> CSS class of the banner.
_TONE = {"OK": "ok", "PROBLEM": "warn", "CRITICAL": "bad", "NOT PROTECTED": "bad",
         "UNKNOWN": "unknown"}
# The state alerts whose runbooks the page links, by connector state.
_STATE_ALERTS = {"not_installed": "ConnectorNotInstalled",
                 "daemon_not_running": "ConnectorDaemonNotRunning",
                 "not_answering": "ConnectorNotAnswering"}

_STYLE = """
body{font:18px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1b1b1b;background:#f6f6f6}
main{max-width:46rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.2rem;margin:1.4rem 0 .4rem}
h3{font-size:1.05rem;margin:0 0 .3rem}section h2{margin-top:.2rem}
.verdict{padding:1rem;border-radius:.5rem;color:#fff;overflow-wrap:anywhere}
.verdict p{margin:.3rem 0 0}
.ok{background:#1e7d32}.warn{background:#b35900}.bad{background:#b71c1c}
.unknown{background:#555}
section{background:#fff;border-radius:.5rem;padding:.6rem 1rem;margin:.6rem 0}
.fault{border-left:.4rem solid #b35900;padding:.2rem 0 .2rem .8rem;margin:.8rem 0}
.fault.critical{border-left-color:#b71c1c}
.sev{display:inline-block;padding:0 .4rem;border-radius:.3rem;color:#fff;
background:#b35900;font-size:.9rem;text-transform:uppercase}
.sev.critical{background:#b71c1c}.sev.minor,.sev.none{background:#555}
ul{padding-left:1.2rem;margin:.3rem 0}li{margin:.2rem 0;overflow-wrap:anywhere}
dl{margin:0}dt{font-weight:600}dd{margin:0 0 .4rem 0;overflow-wrap:anywhere}
.failed{color:#b71c1c;font-weight:600}
a{color:#0b57d0}code{font-size:.9em;overflow-wrap:anywhere}
"""


@functools.lru_cache(maxsize=1)
def _alerts() -> frozenset[str]:
    from amp_exporter.monitoring.alerts import alert_names  # the generated rules' names

    return frozenset(alert_names())


def runbook(name: str) -> Optional[str]:
    """The runbook URL of alert CiscoAmpNAME (or of the alert named NAME in full), as the
    generated alert rules link it; None when there is no such alert."""
    from amp_exporter.monitoring.alerts import runbook_url
    from amp_exporter.monitoring.config import ALERT_PREFIX

    full = name if name.startswith(ALERT_PREFIX) else ALERT_PREFIX + name
    return runbook_url(full) if full in _alerts() else None


def _fault_runbook(fault_report) -> Optional[str]:
    from amp_exporter.monitoring.alerts import fault_alert_name

    if fault_report.fault is None:
        return runbook("UnknownFaultReported")
    return runbook(fault_alert_name(fault_report.fault))


def _link(url: str, text: str) -> str:
    return f'<a href="{escape(url)}">{escape(text)}</a>'


def _faults(r: Report) -> list[str]:
    shown = [f for f in r.faults if f.of_concern]
    out = ['<section id="faults"><h2>Faults</h2>']
    if not shown:
        if any(f.status.startswith("unknown") for f in r.faults):
            out.append("<p>Not known: the connector did not answer.</p>")
        else:
            out.append("<p>No fault raised, no cause found.</p>")
        out.append("</section>")
        return out
    for f in shown:
        sev = f.severity or "none"
        tone = " critical" if f.raised and sev == "critical" else ""
        out.append(f'<div class="fault{tone}" data-fault="{f.id}">')
        badge = (f'<span class="sev {escape(sev)}">{escape(sev)}</span> ' if f.raised
                 else "")
        out.append(f"<h3>{badge}Fault {f.id}: {escape(f.title)}</h3>")
        out.append(f"<p>{escape(f.status)}</p>")
        if f.message:
            out.append(f"<p>The connector says: {escape(f.message)}</p>")
        if f.causes:
            out.append("<p><strong>Causes found</strong></p><dl>")
            for cause, detail in f.causes:
                out.append(f"<dt>{escape(detail)}</dt><dd>Fix: {escape(cause.remedy)}</dd>")
            out.append("</dl>")
        elif f.raised:
            out.append("<p>No cause found by the exporter's own checks.</p>")
        if f.actions:
            out.append("<p><strong>What to do</strong></p><ul>")
            out += [f"<li>{escape(a)}</li>" for a in f.actions]
            out.append("</ul>")
        url = _fault_runbook(f)
        if url:
            out.append(f"<p>Runbook: {_link(url, url.rsplit('/', 1)[-1])}</p>")
        out.append("</div>")
    out.append("</section>")
    return out


def _connector(r: Report) -> list[str]:
    out = ['<section id="connector"><h2>Connector</h2><dl>']
    if r.state is None:
        out.append("<dt>State</dt><dd>not asked (the connector collector is off)</dd>")
    else:
        known = CONNECTOR_STATES_BY_NAME[r.state]
        out.append(f"<dt>State</dt><dd><code>{escape(r.state)}</code>: "
                   f"{escape(known.meaning)}</dd>")
    if r.connector:
        out.append(f"<dt>Connector</dt><dd>{escape(r.connector)}</dd>")
    versions = [dict(k).get("version", "") for k in r.values.get("cisco_amp_connector_info", {})]
    if any(versions):
        out.append(f"<dt>Version</dt><dd>{escape(', '.join(v for v in versions if v))}</dd>")
    if r.ampcli:
        out.append(f"<dt>ampcli</dt><dd>{escape(r.ampcli)}</dd>")
    if r.monitoring:
        out.append(f"<dt>Monitoring</dt><dd>{escape(r.monitoring)}</dd>")
    out.append("</dl></section>")
    return out


def _what_to_do(r: Report) -> list[str]:
    out = ['<section id="todo"><h2>What to do</h2><ul>']
    if r.state is not None and r.state != "answering":
        out.append(f"<li>{escape(CONNECTOR_STATES_BY_NAME[r.state].next_step)}</li>")
    for f in r.faults:
        if f.raised:
            out.append(f"<li>Fault {f.id} ({escape(f.title)}): the causes and steps under it."
                       "</li>")
        elif f.causes:
            out.append(f"<li>Fault {f.id}: not raised, but a cause is present: fix it before "
                       "it is.</li>")
    if r.failed:
        out.append("<li>Checks that could not run: " + escape(", ".join(r.failed))
                   + " (the exporter's log says why).</li>")
    if len(out) == 1:
        out.append("<li>Nothing: this host is healthy.</li>")
    out.append("</ul>")
    links = []
    state_alert = _STATE_ALERTS.get(r.state or "")
    if state_alert:
        links.append(runbook(state_alert))
    if r.value("cisco_amp_connector_degraded") == 1:
        links.append(runbook("ConnectorDegraded"))
    if r.state == "answering" and r.value("cisco_amp_connector_connected") == 0:
        links.append(runbook("ConnectorDisconnected"))
    links += [_fault_runbook(f) for f in r.faults if f.of_concern]
    if r.failed:
        links.append(runbook("CollectorFailing"))
    links = list(dict.fromkeys(u for u in links if u))
    if links:
        out.append('<p><strong>Runbooks</strong></p><ul id="runbooks">')
        out += [f"<li>{_link(u, u.rsplit('/', 1)[-1])}</li>" for u in links]
        out.append("</ul>")
    out.append("</section>")
    return out


def _collectors(r: Report) -> list[str]:
    out = ['<section id="collectors"><h2>Collectors</h2><ul>']
    for c in r.collectors:
        ms = f"{c.seconds * 1000:.0f} ms"
        if c.ok:
            out.append(f'<li data-collector="{escape(c.name)}">{escape(c.name)}: ok ({ms})</li>')
        else:
            why = f", {escape(c.reason)}" if c.reason else ""
            out.append(f'<li data-collector="{escape(c.name)}" class="failed">'
                       f"{escape(c.name)}: FAILED ({ms}{why})</li>")
    out.append("</ul></section>")
    return out


def _ebpf(r: Report) -> str:
    sources = r.values.get("amp_exporter_events_source")
    if sources is None:
        return "not used (the events collector is off or did not run)"
    active = [dict(k)["source"] for k, v in sources.items() if v == 1]
    why = [dict(k)["reason"] for k, v in r.values.get("amp_exporter_events_ebpf_unavailable",
                                                      {}).items() if v == 1]
    if "ebpf" in active:
        attached = r.value("amp_exporter_events_tracepoints_attached")
        return "active" + (f", {attached:.0f} tracepoints attached" if attached else "")
    return ("not active" + (f" ({', '.join(why)})" if why else "")
            + (f"; event counts from {', '.join(active)}" if active else ""))


def _exporter(r: Report, exporter: Exporter, started: float, seconds: float) -> list[str]:
    start = started
    for family in exporter.process_families():
        if family.name == "process_start_time_seconds":
            start = family.samples[0].value
    up = max(0, int(time.time() - start))
    uptime = f"{up // 86400}d {up % 86400 // 3600}h {up % 3600 // 60}m {up % 60}s"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start))
    return ['<section id="exporter"><h2>amp-exporter</h2><dl>',
            f"<dt>Version</dt><dd>{escape(__version__)}</dd>",
            f"<dt>Started</dt><dd>{stamp} (up {uptime})</dd>",
            f"<dt>eBPF event source</dt><dd>{escape(_ebpf(r))}</dd>",
            f"<dt>Host root</dt><dd><code>{escape(r.rootfs)}</code></dd>",
            f"<dt>This page</dt><dd>collected in {seconds * 1000:.0f} ms (ampcli bounded by "
            f"{exporter.settings.ampcli_timeout:g} s)</dd></dl></section>"]


def render(r: Report, exporter: Exporter, telemetry_path: str, started: float,
           seconds: float) -> str:
    word = r.verdict
    tone = _TONE.get(word, "unknown")
    if any(f.raised and f.severity == "critical" for f in r.faults):
        tone = "bad"  # a critical fault: the connector does not protect as it should
    verdict, _, rest = r.headline.partition(": ")
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',  # tests read a bare <html>
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(word)}: amp-exporter</title>",
        f"<style>{_STYLE}</style></head><body><main>",
        f'<div class="verdict {tone}" id="verdict"><h1>{escape(verdict)}</h1>'
        f"<p>{escape(rest)}</p></div>",
        *_connector(r), *_faults(r), *_what_to_do(r), *_collectors(r),
        *_exporter(r, exporter, started, seconds),
        f'<section id="links"><h2>Links</h2><ul><li>{_link(telemetry_path, telemetry_path)}: '
        "metrics</li>",
        f"<li>{_link('/-/healthy', '/-/healthy')}: the process answers</li>",
        f"<li>{_link('/-/ready', '/-/ready')}: ready to serve scrapes</li></ul></section>",
        "</main></body></html>\n",
    ]
    return "\n".join(parts)


def page(exporter: Exporter, telemetry_path: str, started: float) -> bytes:
    """The status page of this host now: one collection, as a scrape."""
    begin = time.perf_counter()
    r = report(exporter)
    return render(r, exporter, telemetry_path, started,
                  time.perf_counter() - begin).encode()
