"""Shared fixtures: example host trees built by examples/build_hosts.py, and scrapes."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
EXPORTER = [sys.executable, "-m", "amp_exporter"]


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_hosts",
                                                  REPO / "examples" / "build_hosts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_hosts"] = module
    spec.loader.exec_module(module)
    return module


builder = _load_builder()


@pytest.fixture(scope="session")
def hosts(tmp_path_factory) -> dict[str, Path]:
    """Every example host, built once per session. Read-only: copy before changing."""
    return builder.build(tmp_path_factory.mktemp("hosts"))


@pytest.fixture
def host_copy(tmp_path):
    """A private, changeable copy of one example host: host_copy('healthy-ebpf-btf')."""
    def make(name: str) -> Path:
        return builder.build(tmp_path / "hosts", [name])[name]
    return make


def run_exporter(*args: str, timeout: float = 60, env_extra: Optional[dict] = None,
                 **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "TZ": "UTC", "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([*EXPORTER, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO, **kwargs)


def parse_exposition(text: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}}"""
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


ERRORS = "amp_exporter_collector_errors_total"


class Scrape(dict):
    def value(self, name: str, **labels):
        return self.get(name, {}).get(tuple(sorted((k, str(v)) for k, v in labels.items())))

    def causes(self, fault_id: int) -> dict[str, float]:
        return {dict(k)["cause"]: v for k, v in self.get("cisco_amp_fault_cause", {}).items()
                if dict(k)["fault_id"] == str(fault_id)}

    def found_causes(self) -> set[tuple[int, str]]:
        return {(int(dict(k)["fault_id"]), dict(k)["cause"])
                for k, v in self.get("cisco_amp_fault_cause", {}).items() if v == 1}

    def success(self) -> dict[str, float]:
        return {dict(k)["collector"]: v
                for k, v in self.get("amp_exporter_scrape_collector_success", {}).items()}

    def errors(self, since: Scrape | None = None) -> set[tuple[str, str]]:
        """(collector, reason) of every error counted, or only of those counted after the
        earlier scrape SINCE."""
        before = since.get(ERRORS, {}) if since is not None else {}
        return {(dict(k)["collector"], dict(k)["reason"])
                for k, v in self.get(ERRORS, {}).items() if v > before.get(k, 0)}


def scrape_text(root: Path, *flags: str) -> str:
    result = run_exporter("textfile", "--output", "-", "--path.rootfs", str(root), *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def scrape():
    """scrape(root, *flags) -> Scrape, through the real command line, end to end."""
    def do(root: Path, *flags: str) -> Scrape:
        return Scrape(parse_exposition(scrape_text(root, *flags)))
    return do


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


T = TypeVar("T")


def concurrently(fn: Callable[[], T], n: int) -> list[T]:
    """fn() in n threads released together, and what each returned; an exception in any
    of them is raised here."""
    barrier = threading.Barrier(n)

    def one(_: int) -> T:
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackDaemon:
    """A real server binary (prometheus, alertmanager) started on loopback, its output kept
    in a log file for the assertion messages."""

    def __init__(self, argv: list[str], log: Path, port: int) -> None:
        self.port = port
        self.log = log.open("w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def read_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -- eBPF on this machine ------------------------------------------------------------------

@functools.cache
def ebpf_blocker() -> str | None:
    """Why this machine cannot run the eBPF source, or None (asked once per session)."""
    from amp_exporter.host import ebpf_loader

    if os.geteuid() != 0:
        return "not root"
    if not any(os.path.isdir(f"{d}/events/sched") for d in ebpf_loader.TRACEFS_DIRS):
        return "tracefs not mounted (scripts/test-setup-ebpf mounts it)"
    if not os.path.exists(f"/lib/modules/{os.uname().release}/build"):
        return "no kernel headers (scripts/test-setup-ebpf links them)"
    probe = subprocess.run([sys.executable, "-c", "import bcc"], capture_output=True)
    if probe.returncode != 0:
        return "bcc does not import (Debian python3-bpfcc, venv with --system-site-packages)"
    return None


# scripts/test sets this once its set-up made this machine able to run eBPF: from then on a
# test that cannot run it is a failure to report, not a skip to overlook.
EBPF_REQUIRED = os.environ.get("AMP_REQUIRE_EBPF") == "1"


@pytest.fixture
def ebpf_ready():
    """Skips (or, where eBPF is required, fails) a test that needs eBPF on this machine."""
    if ebpf_blocker() is not None:
        (pytest.fail if EBPF_REQUIRED else pytest.skip)(f"eBPF cannot run here: {ebpf_blocker()}")


# -- real processes on this machine --------------------------------------------------------

LIVE_BIN = Path("/opt/cisco/amp/bin")


@pytest.fixture
def live_connector():
    """Real processes named like the connector's, run from /opt/cisco/amp/bin on this
    machine (only where no connector is installed, and only as root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create /opt/cisco/amp/bin")
    if Path("/opt/cisco").exists():
        pytest.skip("/opt/cisco exists on this machine: not touching a real connector")
    LIVE_BIN.mkdir(parents=True)
    procs: list[subprocess.Popen] = []
    try:
        def start(name: str, program: str = "/bin/sleep", *args: str) -> subprocess.Popen:
            """Run a copy of `program` as /opt/cisco/amp/bin/NAME (default: sleep 600)."""
            if not (LIVE_BIN / name).exists():
                shutil.copy(program, LIVE_BIN / name)
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            p = subprocess.Popen([str(LIVE_BIN / name), *(args or ("600",))], env=env,
                                 stdout=subprocess.PIPE, text=True)
            procs.append(p)
            return p

        yield start
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree("/opt/cisco")


# The example hosts' daily.cvd carries a fixed build time (examples/build_hosts.py, so the
# goldens stay put): weeks old by now, which CiscoAmpDefinitionsStale rightly pages on.
# Tests that run the alerts over hosts meant to be healthy give their copies fresh ones.
DAILY = "opt/cisco/amp/clamav/daily.cvd"
DAILY_BUILT = b":1763976000"


def fresh_definitions(root: Path) -> Path:
    """ROOT, whose daily.cvd (if whole) now says it was built now: definitions not stale."""
    daily = root / DAILY
    data = daily.read_bytes() if daily.is_file() else b""  # no connector, no definitions
    if DAILY_BUILT in data:
        built = b":%d" % time.time()
        assert len(built) == len(DAILY_BUILT)  # the header keeps its 512 bytes
        daily.write_bytes(data.replace(DAILY_BUILT, built, 1))
    return root


def copy_host(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target
