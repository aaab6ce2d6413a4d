"""The status page at `/`, as a person reads it: served by the real exporter, loaded in a
real browser (headless Chromium), compared with what `amp-exporter check` prints."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO, builder, run_exporter
from test_http import Server

from amp_exporter.monitoring.config import RUNBOOK_URL_BASE

CHROMIUM = shutil.which("chromium")
SCREENSHOTS = REPO / "build" / "screenshots"
# ampcli-silent hangs: bound it as its check test does, and the same on every host.
FLAGS = ("--ampcli.timeout", "0.5")
HEALTHY = {"healthy-ebpf-btf", "healthy-kmod"}


def _chromium_blocker() -> str | None:
    if CHROMIUM is None:
        return "chromium missing (scripts/setup installs Debian's chromium)"
    try:
        probe = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                                "--dump-dom", "about:blank"], capture_output=True, text=True,
                               timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"chromium does not run: {exc}"
    if "<html" not in probe.stdout:
        return f"chromium does not run: {probe.stderr[-300:]}"
    return None


@pytest.fixture(scope="module")
def browser():
    blocker = _chromium_blocker()
    if blocker:
        pytest.skip(blocker)
    return CHROMIUM


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=30)


def dump_dom(browser: str, profile: Path, url: str) -> str:
    result = _chromium(browser, profile, "--dump-dom", url)
    assert "<html" in result.stdout, result.stderr[-2000:]
    return result.stdout


class Page(HTMLParser):
    """What a person reads on the page, and what the browser would fetch or run."""

    def __init__(self, dom: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self.verdict_class = ""
        self.faults: dict[int, dict] = {}  # data-fault id -> {"title": h3 text, "sev": ...}
        self.collectors: dict[str, bool] = {}  # name -> shown as failed
        self.text: list[str] = []
        self.style = ""
        self._stack: list[tuple[str, dict]] = []
        self._fault: int | None = None
        self._in: dict[str, list[str]] = {}
        self.feed(dom)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        for name in ("src", "href", "action", "srcset", "data", "poster"):
            if a.get(name):
                self.urls.append((tag, name, a[name]))
        if a.get("id") == "verdict":
            self.verdict_class = a.get("class", "")
        if "data-fault" in a:
            self._fault = int(a["data-fault"])
            self.faults[self._fault] = {"title": "", "sev": "", "text": ""}
        if "data-collector" in a:
            self.collectors[a["data-collector"]] = "failed" in a.get("class", "").split()
        if tag not in ("meta", "br", "img", "link", "input"):
            self._stack.append((tag, a))

    def handle_endtag(self, tag):
        while self._stack:
            t, a = self._stack.pop()
            if "data-fault" in a:
                self._fault = None
            if t == tag:
                break

    def _inside(self, tag: str, cls: str | None = None) -> bool:
        return any(t == tag and (cls is None or cls in a.get("class", "").split())
                   for t, a in self._stack)

    def handle_data(self, data):
        if self._inside("style"):
            self.style += data
            return
        self.text.append(data)
        if self._inside("div") and any(a.get("id") == "verdict" for _, a in self._stack):
            key = "verdict_word" if self._inside("h1") else "verdict_rest"
            self._in.setdefault(key, []).append(data)
        if self._fault is not None:
            fault = self.faults[self._fault]
            fault["text"] += data
            if self._inside("h3"):
                if self._inside("span", "sev"):
                    fault["sev"] += data
                else:
                    fault["title"] += data

    @property
    def verdict(self) -> str:
        return "".join(self._in.get("verdict_word", [])).strip()

    @property
    def verdict_rest(self) -> str:
        return "".join(self._in.get("verdict_rest", [])).strip()

    @property
    def all_text(self) -> str:
        return "".join(self.text)


_FAULT_LINE = re.compile(r"^\[\s*(\d+)\] (.+?): (RAISED(?: \((\w+)\))?|clear, but a cause is "
                         r"present)$", re.M)


def check_says(root: Path, *flags: str) -> tuple[str, dict[int, tuple[str, str | None]], list]:
    """`check`'s first line, its faults of concern {id: (title, severity: None for a cause
    without its fault, "" for a raised fault it gives none)} and the checks it says could
    not run."""
    out = run_exporter("check", "--path.rootfs", str(root), *flags).stdout
    faults = {int(m.group(1)): (m.group(2), (m.group(4) or "") if m.group(3).startswith(
        "RAISED") else None) for m in _FAULT_LINE.finditer(out)}
    failed = re.search(r"^Checks that could not run \(see the log above\): (.+)$", out, re.M)
    return out.split("\n", 1)[0], faults, failed.group(1).split(", ") if failed else []


def assert_reads_as_check(page: Page, first_line: str, faults: dict, failed: list) -> None:
    word, _, rest = first_line.partition(": ")
    assert page.verdict == word, (page.verdict, first_line)
    assert page.verdict_rest == rest
    assert set(page.faults) == set(faults), (sorted(page.faults), sorted(faults))
    for fid, (title, sev) in faults.items():
        shown = page.faults[fid]
        assert shown["title"].strip() == f"Fault {fid}: {title}", shown
        if sev:
            assert shown["sev"].strip() == sev, shown
        elif sev == "":  # a fault the catalog does not know: check gives no severity
            assert "RAISED" in shown["text"], shown
        else:
            assert "a cause is present" in shown["text"], shown
    assert sorted(n for n, bad in page.collectors.items() if bad) == sorted(failed)


def assert_self_contained(page: Page, dom: str) -> None:
    assert "script" not in page.tags and "link" not in page.tags
    assert not any(t in page.tags for t in ("img", "iframe", "object", "embed", "form"))
    assert "url(" not in page.style and "@import" not in page.style
    local = {"/metrics", "/-/healthy", "/-/ready"}
    for tag, attribute, url in page.urls:
        if url in local:
            continue
        assert (tag, attribute) == ("a", "href") and url.startswith(RUNBOOK_URL_BASE), url
        assert (REPO / "docs" / "runbooks" / url[len(RUNBOOK_URL_BASE):]).is_file(), url
    assert [u for _, _, u in page.urls if u in local] == ["/metrics", "/-/healthy", "/-/ready"]
    assert len(dom.encode()) < 30_000
    assert 'name="viewport"' in dom


@pytest.mark.parametrize("name", list(builder.HOSTS))
def test_every_example_host_reads_as_check_says(hosts, browser, tmp_path, name):
    server = Server(hosts[name], *FLAGS)
    try:
        with ThreadPoolExecutor(1) as pool:
            check = pool.submit(check_says, hosts[name], *FLAGS)
            dom = dump_dom(browser, tmp_path / "profile", f"http://127.0.0.1:{server.port}/")
            first_line, faults, failed = check.result()
        status, served = server.get("/")
    finally:
        server.stop()
    assert status == 200
    page = Page(dom)
    assert_reads_as_check(page, first_line, faults, failed)
    assert_self_contained(page, served)
    assert_self_contained(page, dom)
    healthy = first_line.startswith("OK")
    assert ("ok" in page.verdict_class.split()) == healthy, page.verdict_class
    if healthy:
        assert page.faults == {} and "No fault raised, no cause found." in page.all_text
        assert "Nothing: this host is healthy." in page.all_text
    if any(sev == "critical" for _, sev in faults.values()):
        assert "bad" in page.verdict_class.split()  # red, as a critical fault is
    # The exporter's own figures, and a state the collectors said.
    assert "amp-exporter" in page.all_text and "eBPF event source" in page.all_text
    assert re.search(r"up \d+d \d+h \d+m \d+s", page.all_text)


def test_the_degraded_fault_11_host_says_why_and_what_to_do(hosts, browser, tmp_path):
    server = Server(hosts["fault-11-kernel-headers"], *FLAGS)
    try:
        page = Page(dump_dom(browser, tmp_path / "p", f"http://127.0.0.1:{server.port}/"))
    finally:
        server.stop()
    text = page.all_text
    assert page.verdict == "PROBLEM" and "bad" in page.verdict_class.split()
    assert "installed, connected, DEGRADED mode" in text
    assert "1.24.2" in text  # the connector's version
    assert "lib/modules/4.19.0-26-amd64/build does not resolve" in page.faults[11]["text"]
    assert "linux-headers-$(uname -r)" in page.faults[11]["text"]
    runbooks = {u for _, _, u in page.urls if u.startswith(RUNBOOK_URL_BASE)}
    assert runbooks == {RUNBOOK_URL_BASE + "required-kernel-level-packages-missing.md",
                        RUNBOOK_URL_BASE + "connector-degraded.md"}


@pytest.mark.parametrize(("change", "verdict"), [
    ("ampcli_may_not_run", "UNKNOWN"),
    ("ampcli_hangs", "CRITICAL"),
])
def test_a_connector_that_cannot_be_asked_reads_as_check_says(host_copy, browser, tmp_path,
                                                              change, verdict):
    root = host_copy("healthy-ebpf-btf")
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    if change == "ampcli_may_not_run":
        ampcli.chmod(0o644)
    else:
        ampcli.write_text("#!/bin/sh\nsleep 60\n")
    server = Server(root, *FLAGS)
    try:
        with ThreadPoolExecutor(1) as pool:
            check = pool.submit(check_says, root, *FLAGS)
            begin = time.monotonic()
            status, _ = server.get("/", timeout=10)
            took = time.monotonic() - begin
            dom = dump_dom(browser, tmp_path / "p", f"http://127.0.0.1:{server.port}/")
            first_line, faults, failed = check.result()
    finally:
        server.stop()
    assert status == 200
    assert took < 3, f"/ took {took:.1f} s: a request must be bounded as a scrape is"
    page = Page(dom)
    assert page.verdict == verdict
    assert_reads_as_check(page, first_line, faults, failed)


def test_a_hostile_connector_string_is_shown_escaped(host_copy, browser, tmp_path):
    root = host_copy("fault-11-kernel-headers")
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)> & \"q\""
    script = ampcli.read_text()
    assert "ID 11 - Critical: " in script
    ampcli.write_text(re.sub(r"(ID 11 - Critical: ).*", lambda m: m.group(1) + hostile, script))
    server = Server(root, *FLAGS)
    try:
        _, served = server.get("/")
        dom = dump_dom(browser, tmp_path / "p", f"http://127.0.0.1:{server.port}/")
    finally:
        server.stop()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x" in served
    for html in (served, dom):
        page = Page(html)
        assert "script" not in page.tags and "img" not in page.tags
        assert f"The connector says: {hostile}" in page.faults[11]["text"]


@pytest.mark.parametrize("name", ["fault-11-kernel-headers", "healthy-ebpf-btf",
                                  "daemon-dead", "no-connector"])
def test_a_phone_sized_screenshot(hosts, browser, tmp_path, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = SCREENSHOTS / f"{name}.png"
    png.unlink(missing_ok=True)
    server = Server(hosts[name], *FLAGS)
    try:
        result = _chromium(browser, tmp_path / "p", f"--screenshot={png}",
                           "--window-size=412,915", "--hide-scrollbars",
                           f"http://127.0.0.1:{server.port}/")
    finally:
        server.stop()
    assert png.is_file(), result.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000, len(data)


def test_a_page_costs_about_a_scrape(hosts):
    """The page runs one collection, as a scrape: it costs about as much, and says so."""
    server = Server(hosts["multi-fault"], *FLAGS)
    try:
        server.get("/"), server.get()  # first runs: imports, caches

        def timed(path: str) -> float:
            begin = time.perf_counter()
            for _ in range(10):
                assert server.get(path)[0] == 200
            return (time.perf_counter() - begin) / 10

        page, scrape = timed("/"), timed("/metrics")
    finally:
        server.stop()
    print(f"/ {page * 1000:.1f} ms, /metrics {scrape * 1000:.1f} ms")
    assert page < max(10 * scrape, 0.5), (page, scrape)
