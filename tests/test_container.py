"""The image, built from deploy/container/Containerfile with podman and run with the very
command deploy/container/README.md gives, against this machine.

The host it reads is this machine's, with a stand-in connector: in a private mount
namespace, a tmpfs over /opt holds /opt/cisco/amp/bin/{ampdaemon,ampscansvc} (copies of
sleep, run as real processes) and a stand-in ampcli that prints a real status (fault 18,
Major) only when it runs in the host's root: as /opt/cisco/amp/bin/ampcli, from /, with
the host's /opt/cisco beside it. In the container's own root it does what the real,
dynamically linked ampcli does there: 'Trying to connect...' and exit 1. podman runs in
that namespace, so the container's `-v /:/host` sees the stand-ins; the machine's own /opt
is never touched.

This machine's quirks are the test set-up's only, never the Containerfile's or the
README's: crun cannot start containers here (hybrid cgroups), so `--runtime runc`; without
CAP_SYS_RESOURCE here each run passes lower `--ulimit`s; no registry is reachable, so the
base image is a `debootstrap --variant=minbase bookworm` made slim as debian:12-slim is and
imported under that name (once per machine, kept in podman's store); and pip in the build
is given the CA bundle this machine's own pip uses."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Scrape, free_port, parse_exposition
from test_ampcli_runner import REAL_STATUS

from amp_exporter.scrape import available

TOOLS = ("podman", "runc", "debootstrap", "unshare", "nsenter")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in TOOLS),
    reason=f"needs root and {', '.join(TOOLS)} (scripts/setup installs them)")

README = REPO / "deploy" / "container" / "README.md"
IMAGE = "localhost/amp-exporter:test"
BASE = "docker.io/library/debian:12-slim"
MIRROR = "http://deb.debian.org/debian"
RUNTIME = ("--runtime", "runc")
ULIMITS = ("--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096")
# debian:12-slim's own trimming (its dpkg excludes and apt clean-up hook), so that the
# image size measured here is the size a user's build has.
ADDED_CAPABILITIES = tuple(f"--cap-add={cap}" for cap in
                           ("DAC_READ_SEARCH", "SYS_PTRACE", "BPF", "PERFMON", "SYS_CHROOT"))
SLIM_DPKG = "".join(f"path-exclude /usr/share/{d}/*\n" for d in
                    ("doc", "man", "groff", "info", "lintian", "linda", "locale")) + \
    "path-include /usr/share/doc/*/copyright\n"
CLEAN_APT = ('rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
             '/var/cache/apt/*.bin || true')
SLIM_APT = (f'DPkg::Post-Invoke {{ "{CLEAN_APT}"; }};\n'
            f'APT::Update::Post-Invoke {{ "{CLEAN_APT}"; }};\n'
            'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n')

STAND_IN_AMPCLI = """\
#!/bin/sh
# Stand-in ampcli: answers only in the host's root.
if [ "$0" != /opt/cisco/amp/bin/ampcli ] || [ ! -e /opt/cisco/amp/host-root ] || \\
   [ "$(pwd)" != / ]; then
    echo '[logger] Set minimum reported log level to notice'
    echo 'Trying to connect...'
    exit 1
fi
cat <<'EOF'
""" + REAL_STATUS + "EOF\n"


def run(argv: list[str] | tuple[str, ...], timeout: float = 300,
        **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{shlex.join(argv)}: {result.stderr[-2000:]}"
    return result


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run(["podman", *args], timeout=timeout)


def slim_base(tmp: Path) -> None:
    """debian:12-slim from debootstrap: minbase, trimmed as the official image is."""
    root = tmp / "rootfs"
    run(["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR], timeout=900)
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG)
    (root / "etc/apt/apt.conf.d/docker-clean").write_text(SLIM_APT)
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "var/log/*",
                    "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
                    "usr/share/groff/*", "usr/share/lintian/*"):
        for path in root.glob(pattern):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for path in (root / "usr/share/doc").glob("*/*"):
        if path.name != "copyright":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(["podman", "import", "-", BASE], stdin=tar.stdout,
                              capture_output=True, text=True, timeout=300)
    tar.stdout.close()
    assert tar.wait() == 0 and imported.returncode == 0, imported.stderr
    shutil.rmtree(root)


def pip_ca_bundle() -> str | None:
    """The CA bundle this machine's pip is configured with (`pip config list`), if any."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                         capture_output=True, text=True).stdout
    found = re.search(r"^[\w:.-]*\bcert='([^']+)'", out, re.MULTILINE)
    return found.group(1) if found and os.path.isfile(found.group(1)) else None


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> str:
    if subprocess.run(["podman", "image", "exists", BASE]).returncode != 0:
        slim_base(tmp_path_factory.mktemp("base"))
    build = ["build", "--isolation=chroot", "--network=host"]
    ca = pip_ca_bundle()
    if ca:
        build += ["-v", f"{ca}:/etc/ssl/certs/build-host-ca.crt:ro",
                  "--env", "PIP_CERT=/etc/ssl/certs/build-host-ca.crt"]
    podman(*build, "-f", "deploy/container/Containerfile", "-t", IMAGE, str(REPO),
           timeout=900)
    return IMAGE


class Host:
    """This machine as the container sees it: a private mount namespace (held by a sleeping
    process) whose /opt is a tmpfs with the stand-in connector."""

    def __init__(self) -> None:
        setup = ("mount -t tmpfs -o mode=0755 amp-test /opt && mkdir -p /opt/cisco/amp/bin "
                 "&& cp /bin/sleep /opt/cisco/amp/bin/ampdaemon "
                 "&& cp /bin/sleep /opt/cisco/amp/bin/ampscansvc "
                 "&& touch /opt/cisco/amp/host-root && cat > /opt/cisco/amp/bin/ampcli "
                 "&& chmod 0755 /opt/cisco/amp/bin/ampcli && echo ready && exec sleep 3600")
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.holder.stdin.write(STAND_IN_AMPCLI)
        self.holder.stdin.close()
        assert self.holder.stdout.readline() == "ready\n"
        self.daemons = [self.popen(f"/opt/cisco/amp/bin/{name}", "3600")
                        for name in ("ampdaemon", "ampscansvc")]

    def enter(self) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--"]

    def popen(self, *argv: str) -> subprocess.Popen:
        return subprocess.Popen([*self.enter(), *argv])

    def close(self) -> None:
        for p in [*self.daemons, self.holder]:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    h = Host()
    yield h
    h.close()


def readme_commands() -> tuple[list[str], list[str]]:
    """(the seccomp-ebpf.py command, the `podman run` argv) of the README's run block."""
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index("## Running it against the host"):],
                      re.DOTALL).group(1)
    lines = [line for line in block.replace("\\\n", " ").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    profile = next(shlex.split(line) for line in lines if "seccomp-ebpf.py" in line)
    run_argv = next(shlex.split(line) for line in lines if line.startswith("podman run"))
    return profile[:profile.index(">")], run_argv


class Container:
    def __init__(self, host: Host, argv: list[str], name: str, port: int) -> None:
        self.host, self.argv, self.name, self.port = host, argv, name, port

    def start(self, timeout: float = 60) -> float:
        """Start it; seconds from `podman run` to the first answered scrape."""
        subprocess.run(["podman", "rm", "-f", self.name], capture_output=True)
        began = time.monotonic()
        run([*self.host.enter(), *self.argv], timeout=120)
        while True:
            try:
                self.scrape()
                return time.monotonic() - began
            except OSError:
                assert time.monotonic() - began < timeout, self.logs()
                time.sleep(0.02)

    def scrape(self) -> Scrape:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return Scrape(parse_exposition(response.read().decode()))

    def logs(self) -> str:
        return subprocess.run(["podman", "logs", self.name], capture_output=True,
                              text=True).stderr

    def until(self, name: str, timeout: float = 60, **labels: str) -> Scrape:
        """Scrapes until NAME{LABELS} is 1 (the eBPF source compiles in the background)."""
        deadline = time.monotonic() + timeout
        while (s := self.scrape()).value(name, **labels) != 1:
            assert time.monotonic() < deadline, f"{name}{labels} never 1:\n{self.logs()}"
            time.sleep(0.2)
        return s

    def stop(self) -> None:
        subprocess.run([*self.host.enter(), "podman", "rm", "-f", "-t", "2", self.name],
                       capture_output=True, timeout=120)


@pytest.fixture
def container(image, host, tmp_path) -> Iterator:
    """container(without=(), user_default=False) -> a started Container, run with the
    README's command: with the profile its seccomp-ebpf.py line writes (from this machine's
    podman default), on a free loopback port, with this machine's quirks added."""
    started: list[Container] = []

    def make(without: tuple[str, ...] = ()) -> Container:
        profile_cmd, argv = readme_commands()
        profile = tmp_path / "seccomp.json"
        profile.write_text(run(profile_cmd, cwd=REPO).stdout)
        assert argv[:2] == ["podman", "run"] and argv[-1] == "amp-exporter", argv
        argv = [a.replace("/etc/amp-exporter/seccomp.json", str(profile))
                for a in argv if a not in without]
        name = f"amp-exporter-test-{os.getpid()}-{len(started)}"
        argv[argv.index("--name") + 1] = name
        port = free_port()
        argv = ["podman", *RUNTIME, "run", *ULIMITS, *argv[2:-1], image,
                "serve", "--path.rootfs=/host", f"--web.listen-address=127.0.0.1:{port}"]
        c = Container(host, argv, name, port)
        started.append(c)
        c.first_scrape_seconds = c.start()
        return c

    yield make
    for c in started:
        c.stop()


def test_the_image_runs_as_documented(container, ebpf_ready):
    c = container()
    s = c.until("amp_exporter_events_source", source="ebpf")
    assert s.value("amp_exporter_events_ebpf_unavailable", reason="starting") in (None, 0)
    assert all(v == 1 for v in s.success().values()), s.success()
    assert set(s.success()) == set(available()), s.success()
    # eBPF counts: host-wide events move between two scrapes.
    events = sum(s["cisco_amp_host_events_total"].values())
    time.sleep(1)
    later = c.scrape()
    assert sum(later["cisco_amp_host_events_total"].values()) > events
    assert later.value("amp_exporter_events_tracepoints_attached") > 0
    # The host connector's faults, from its ampcli run in the host's root.
    assert later.value("cisco_amp_connector_state", state="answering") == 1
    assert later.value("cisco_amp_fault_active", fault_id="18") == 1
    assert later.value("cisco_amp_fault_severity", fault_id="18") == 2
    # The stand-in connector processes, seen through the host's PID namespace.
    for process in ("ampdaemon", "ampscansvc"):
        assert later.value("cisco_amp_process_up", process=process) == 1
        assert later.value("cisco_amp_process_instances", process=process) == 1
    assert c.first_scrape_seconds < 30


def test_without_the_seccomp_profile_ebpf_is_off_and_says_why(container, ebpf_ready):
    c = container(without=("--security-opt=seccomp=/etc/amp-exporter/seccomp.json",))
    s = c.until("amp_exporter_events_ebpf_unavailable", reason="permission")
    assert s.value("amp_exporter_events_source", source="procfs") == 1
    assert all(v == 1 for v in s.success().values()), s.success()
    assert s.value("cisco_amp_connector_state", state="answering") == 1
    log = c.logs()
    assert "seccomp filter refuses it" in log and "seccomp-ebpf.py" in log, log


def test_the_default_user_keeps_the_capabilities_under_podman(container, ebpf_ready):
    """Without `--user 0` the image's own user (uid 9872) runs it. Podman hands a non-root
    user the added capabilities as ambient ones, so it still does everything."""
    c = container(without=("--user", "0"))
    info = json.loads(run(["podman", "inspect", c.name]).stdout)[0]
    assert info["Config"]["User"] == "9872:9872"
    s = c.until("amp_exporter_events_source", source="ebpf")
    assert all(v == 1 for v in s.success().values()), s.success()
    assert s.value("cisco_amp_connector_state", state="answering") == 1


def test_the_default_user_without_capabilities(container):
    """The image's own user with no added capabilities, which is what Docker and Kubernetes
    give a non-root user whatever --cap-add says: it serves, says which collectors cannot
    work and why, and never reports a false healthy."""
    c = container(without=("--user", "0", *ADDED_CAPABILITIES))
    s = c.until("amp_exporter_events_ebpf_unavailable", reason="permission")
    assert s.value("cisco_amp_connector_state", state="answering") != 1
    assert s.value("cisco_amp_connector_state", state="unknown") == 1
    assert s.success()["connector"] == 0
    assert ("connector", "permission") in s.errors()
    assert "CAP_SYS_CHROOT" in c.logs()
    # What an unprivileged user can read still works.
    assert s.success()["kernel"] == 1
    assert s.value("cisco_amp_process_up", process="ampdaemon") == 1
