"""The HTTP server under load and at shutdown: 100 concurrent scrapes answered whole,
clients that connect and say nothing (or half a request) delaying nobody, and SIGTERM
letting a scrape in flight finish."""

from __future__ import annotations

import threading
import time
import urllib.request

from conftest import Scrape, parse_exposition
from test_http import Server

SLOW_AMPCLI = "#!/bin/sh\necho x >> {runs}\nsleep {seconds}\n"


def slow_ampcli(root, seconds: float) -> None:
    """ampcli takes SECONDS to answer, and leaves a mark in ROOT/runs for each run."""
    ampcli = root / "opt/cisco/amp/bin/ampcli"
    ampcli.write_text(ampcli.read_text().replace(
        "#!/bin/sh\n", SLOW_AMPCLI.format(runs=root / "runs", seconds=seconds), 1))


def fetch(port: int, timeout: float = 20) -> tuple[int, str, float]:
    start = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        return r.status, r.read().decode(), time.monotonic() - start


def series(scrape: Scrape) -> set:
    """Every series of a scrape but the timing ones, whose values differ run to run."""
    return {(name, labels) for name, samples in scrape.items() for labels in samples}


def test_100_concurrent_scrapes_are_answered_whole(host_copy):
    root = host_copy("multi-fault")
    slow_ampcli(root, 0.5)
    s = Server(root, "--ampcli.cache", "0")  # every burst needs a fresh ampcli run
    try:
        reference = Scrape(parse_exposition(fetch(s.port)[1]))
        (root / "runs").unlink()
        results: list[tuple[int, str, float]] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(100)

        def one():
            barrier.wait()
            try:
                results.append(fetch(s.port))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert len(results) == 100 and {status for status, _, _ in results} == {200}
        for _, body, _ in results:
            got = Scrape(parse_exposition(body))
            assert series(got) == series(reference)
            assert set(got.success().values()) == {1.0}
            assert got["cisco_amp_fault_active"] == reference["cisco_amp_fault_active"]
        slowest = max(seconds for _, _, seconds in results)
        runs = (root / "runs").read_text().count("x")
        print(f"100 concurrent scrapes: slowest {slowest:.2f} s, ampcli ran {runs} time(s)")
        assert runs <= 2  # they share the run in flight (a second only for a straggler)
        assert slowest < 3.0  # with a listen backlog of 5, SYN retransmits made it 5-9 s
    finally:
        assert s.stop() == 0
