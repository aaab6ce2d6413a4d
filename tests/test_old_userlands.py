"""The eBPF loader speaks the host's bcc, whatever Python has it: Debian 11's bcc 0.18 under
its Python 3.9, in a root debootstrapped once per session and entered in a private mount
namespace; and Python 3.6 (RHEL 8's platform-python, whose bcc bindings are its only ones),
from pyenv."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
from conftest import EBPF_REQUIRED, REPO
from test_events import (
    assert_unloaded,
    events_exporter,
    exec_and_open,
    map_ids_held_by,
    programs_using,
    total,
)
from test_restarts import scrape

from amp_exporter.host import ebpf_program, events

MIRROR = "http://deb.debian.org/debian"
# The loader child and everything it imports: these must stay Python 3.6.
LOADER_FILES = ["amp_exporter/__init__.py", "amp_exporter/host/__init__.py",
                "amp_exporter/host/ebpf_loader.py", "amp_exporter/host/ebpf_program.py"]

# enter ROOT PROGRAM ARGS...: run PROGRAM (a path inside ROOT) chrooted into ROOT, with
# what the loader needs of the machine bind-mounted into it, all in a mount namespace of its
# own (unshare --propagation private: nothing reaches the machine's mount table, and the
# mounts go with the process). Every PYTHONPATH entry is mounted at its own path, so
# the repository's amp_exporter package is where the exporter's PYTHONPATH names it.
# AMP_TEST_HIDE (colon-separated paths inside ROOT) gets an empty tmpfs over each.
ENTER = r"""#!/bin/sh
exec unshare --mount --propagation private /bin/sh -eu -c '
root=$1; shift
# /sys brings its submounts along (rbind), tracefs at /sys/kernel/tracing among them;
# /lib/modules/RELEASE/build points into /usr/src.
for d in /proc /sys /dev /lib/modules /usr/src; do
    mkdir -p "$root$d"
    mount --rbind "$d" "$root$d"
done
IFS=:
for p in ${PYTHONPATH:-}; do
    [ -n "$p" ] || continue
    mkdir -p "$root$p"
    mount --bind "$p" "$root$p"
done
for p in ${AMP_TEST_HIDE:-}; do
    [ -n "$p" ] || continue
    mount -t tmpfs none "$root$p"
done
unset IFS
exec chroot "$root" "$@"
' enter "$@"
"""


@dataclass
class Root:
    path: Path
    enter: Path  # enter ROOT PROGRAM ARGS...
    python: Path  # a Python for --events.python: the root's /usr/bin/python3, entered

    def run(self, *argv: str, env_extra: Optional[dict] = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
        return subprocess.run([str(self.enter), str(self.path), *argv], capture_output=True,
                              text=True, timeout=timeout, env=env)


def _cannot(why: str):
    """A machine where the old userland cannot be built: a failure where eBPF is required
    (scripts/test), a skip elsewhere."""
    (pytest.fail if EBPF_REQUIRED else pytest.skip)(why)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


@pytest.fixture(scope="session")
def bullseye(tmp_path_factory) -> Root:
    """Debian 11 (minbase, python3 3.9, python3-bpfcc 0.18), debootstrapped once a session."""
    if os.geteuid() != 0:
        _cannot("debootstrap, chroot and unshare need root")
    missing = [t for t in ("debootstrap", "unshare", "chroot") if not shutil.which(t)]
    if missing:
        _cannot(f"{', '.join(missing)} not installed (scripts/setup installs debootstrap)")
    base = tmp_path_factory.mktemp("bullseye")
    root = base / "root"
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-bpfcc",
             "bullseye", str(root), MIRROR], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        _cannot("debootstrap bullseye took over 15 minutes")
    if result.returncode != 0:
        _cannot(f"debootstrap bullseye failed ({result.returncode}): "
                f"{(result.stdout + result.stderr)[-1500:]}")
    print(f"\ndebootstrap bullseye: {time.monotonic() - started:.0f} s")
    enter = base / "enter"
    enter.write_text(ENTER)
    python = base / "python3"
    python.write_text(f"#!/bin/sh\nexec {enter} {root} /usr/bin/python3 \"$@\"\n")
    for script in (enter, python):
        script.chmod(0o755)
    yield Root(root, enter, python)
    # Every mount was made in a namespace that ended with its process: none is on ours.
    assert not _mounts_under(root), _mounts_under(root)
    shutil.rmtree(base)


def test_bullseye_has_the_old_bcc(bullseye):
    result = bullseye.run("/usr/bin/python3", "-c",
                          "import sys, bcc; print(sys.version.split()[0], bcc.__version__)")
    assert result.returncode == 0, result.stderr
    python, bcc = result.stdout.split()
    assert python.startswith("3.9.") and bcc.startswith("0.18."), result.stdout


def test_bcc_018_compiles_loads_and_counts_for_the_exporter(bullseye, ebpf_ready, tmp_path):
    """The exporter (this machine's Python) with --events.python entering the bullseye root:
    bcc 0.18 and clang 11 compile against this machine's kernel headers, the loader hands
    the fds over, and the exporter counts through them."""
    exporter, collector = events_exporter("--events.window", "0.5",
                                          "--events.python", str(bullseye.python))
    ours: set[int] = set()
    try:
        collector.ebpf.wait(120)
        assert collector.ebpf.state == "active", collector.ebpf.reason
        assert collector.ebpf.python == str(bullseye.python)
        assert collector.ebpf.loader["bcc"].startswith("0.18."), collector.ebpf.loader
        assert collector.ebpf.loader["python_version"].startswith("3.9."), collector.ebpf.loader
        print(f"\nbcc 0.18 in bullseye: loaded in {collector.ebpf.load_seconds:.2f} s")
        before = scrape(exporter)
        assert before.value("amp_exporter_events_source", source="ebpf") == 1
        execs, opens = 300, 1000
        exec_and_open(tmp_path, execs, opens)
        time.sleep(0.6)
        after = scrape(exporter)
        assert total(after, "process_exec") - total(before, "process_exec") >= execs
        assert total(after, "file_open") - total(before, "file_open") >= opens
        assert after.value("amp_exporter_events_tracepoints_attached") >= 15
        assert 0 < len(after.get("cisco_amp_process_event_rate", {})) <= 10
        ours = programs_using(map_ids_held_by(os.getpid()))
        assert len(ours) >= 15
    finally:
        exporter.close()
    assert_unloaded(ours, "programs left attached after close()")


DISCOVER = textwrap.dedent("""
    import json, subprocess
    from amp_exporter.host import events
    e = events.EbpfEvents(None, 120)
    e.wait(150)
    execs = 0
    if e.state == "active":
        before = e.counts()[0]["process_exec"]
        for _ in range(100):
            subprocess.run(["/bin/true"], check=True)
        execs = e.counts()[0]["process_exec"] - before
    print(json.dumps({"state": e.state, "reason": e.reason, "message": e.message,
                      "python": e.python, "loader": e.loader, "execs": execs}))
    e.close()
""")


@pytest.fixture(scope="session")
def no_bcc_venv(bullseye) -> str:
    """A virtualenv in the bullseye root without its system site-packages: no bcc."""
    result = bullseye.run("/usr/bin/python3", "-m", "venv", "--without-pip", "/opt/no-bcc")
    assert result.returncode == 0, result.stderr
    return "/opt/no-bcc/bin/python3"


def test_the_default_finds_the_distributions_python_with_bcc(bullseye, no_bcc_venv,
                                                            ebpf_ready):
    """The exporter's side, run by a Python without bcc in the bullseye root: with no
    --events.python it skips itself and finds bullseye's /usr/bin/python3, whose bcc 0.18
    then loads the programs."""
    result = bullseye.run(no_bcc_venv, "-c", DISCOVER)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["state"] == "active", found
    assert found["python"] == "/usr/bin/python3", found
    assert found["loader"]["bcc"].startswith("0.18."), found
    assert found["execs"] >= 100, found


def test_with_bcc_nowhere_the_reason_lists_what_was_tried(bullseye, no_bcc_venv, ebpf_ready):
    result = bullseye.run(no_bcc_venv, "-c", DISCOVER,
                          env_extra={"AMP_TEST_HIDE": "/usr/lib/python3/dist-packages"})
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert (found["state"], found["reason"], found["python"]) == ("unavailable", "no_bcc", None)
    message = found["message"]
    assert message.startswith("no Python that can import bcc"), message
    for tried in (f"{no_bcc_venv} (no bcc)", "/usr/libexec/platform-python (not found)",
                  "/usr/bin/python3 (no bcc)", "/usr/bin/python3.9 (no bcc)",
                  "/usr/local/bin/python3 (not found)"):
        assert tried in message, message


# -- Python 3.6 ----------------------------------------------------------------------------

def pyenv_python36() -> Optional[str]:
    roots = [os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv"), "/root/.pyenv"]
    if shutil.which("pyenv"):
        roots.insert(0, subprocess.run(["pyenv", "root"], capture_output=True,
                                       text=True).stdout.strip())
    for root in filter(None, roots):
        found = glob.glob(f"{root}/versions/3.6.*/bin/python")
        if found:  # the newest 3.6.N
            return max(found, key=lambda p: int(Path(p).parent.parent.name.split(".")[2]))
    return None


@pytest.fixture(scope="session")
def python36() -> str:
    python = pyenv_python36()
    if python is None:
        pytest.skip("pyenv's Python 3.6 is not installed (`pyenv install 3.6`)")
    return python


def test_the_loader_modules_compile_under_python_36(python36, tmp_path):
    code = ("import py_compile, sys\n"
            "for i, f in enumerate(sys.argv[2:]):\n"
            "    py_compile.compile(f, cfile='%s/%d.pyc' % (sys.argv[1], i), doraise=True)\n")
    result = subprocess.run([python36, "-I", "-c", code, str(tmp_path),
                             *(str(REPO / f) for f in LOADER_FILES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


SEND_36 = textwrap.dedent("""
    import json, os, socket, sys
    from amp_exporter.host import ebpf_loader, ebpf_program
    assert sys.version_info[:2] == (3, 6), sys.version
    text, attached = ebpf_program.source(set(json.loads(sys.argv[2])))
    r, w = os.pipe()
    os.write(w, b"through SCM_RIGHTS")
    os.close(w)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=int(sys.argv[1]))
    ebpf_loader.send(sock, {"ok": True, "tracepoints": attached, "text": text},
                     [r, os.open(sys.argv[3], os.O_RDONLY)])
""")


def test_the_loader_sends_from_python_36_what_the_exporter_receives(python36, tmp_path):
    """ebpf_program.source() and ebpf_loader.send() under 3.6 (sendmsg with SCM_RIGHTS),
    received here by the exporter's own receive() (socket.recv_fds): the same wire."""
    wanted = ["sched:sched_process_exec", "syscalls:sys_enter_openat",
              "syscalls:sys_enter_connect", "no:such_tracepoint"]
    marker = tmp_path / "marker"
    marker.write_text("x")
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with parent, child:
        result = subprocess.run(
            [python36, "-c", SEND_36, str(child.fileno()), json.dumps(wanted), str(marker)],
            pass_fds=[child.fileno()], capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, result.stderr
        parent.settimeout(10)
        message, fds = events.receive(parent)
    try:
        header = json.loads(message)
        assert len(fds) == 2
        assert os.read(fds[0], 100) == b"through SCM_RIGHTS"
        assert os.fstat(fds[1]).st_ino == marker.stat().st_ino
    finally:
        for fd in fds:
            os.close(fd)
    # The same program text as this Python's, for the tracepoints that exist.
    text, attached = ebpf_program.source(set(wanted))
    assert (header["text"], header["tracepoints"]) == (text, attached)
    assert attached == wanted[:3]
    for tp in wanted[:3]:
        assert f"int {ebpf_program.function_name(tp)}(void *ctx)" in header["text"]


def test_the_loader_child_runs_under_python_36_and_answers(python36, ebpf_ready):
    """The real loader main() under 3.6, started by the exporter: it has no bcc there, so it
    must answer no_bcc over the socket, not die."""
    ebpf = events.EbpfEvents(python36, 60)
    try:
        ebpf.wait(90)
        assert (ebpf.state, ebpf.reason) == ("unavailable", "no_bcc")
    finally:
        ebpf.close()


def test_the_candidates_start_with_this_python_unless_frozen():
    """This Python first (here the test venv, which sees Debian's bcc), unless it is a
    frozen build: then sys.executable is the exporter, no Python, and the bundle's library
    path (PyInstaller's LD_LIBRARY_PATH, the original in LD_LIBRARY_PATH_ORIG) is not passed
    on to the host's Python."""
    assert events.bcc_python_candidates()[0] == sys.executable
    assert events.bcc_python_candidates()[1:3] == ["/usr/libexec/platform-python",
                                                   "/usr/bin/python3"]
    code = ("import json, sys\nsys.frozen = True\nfrom amp_exporter.host import events\n"
            "env = events.child_env('/bundle')\n"
            "print(json.dumps([events.bcc_python_candidates(), env.get('LD_LIBRARY_PATH'),"
            " env['PYTHONPATH']]))")
    for original, passed in (("/usr/lib/orig", "/usr/lib/orig"), (None, None)):
        env = {**os.environ, "PYTHONPATH": str(REPO), "LD_LIBRARY_PATH": "/bundle"}
        if original:
            env["LD_LIBRARY_PATH_ORIG"] = original
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=env, timeout=30)
        assert result.returncode == 0, result.stderr
        candidates, library_path, pythonpath = json.loads(result.stdout)
        assert sys.executable not in candidates
        assert candidates[:2] == ["/usr/libexec/platform-python", "/usr/bin/python3"]
        assert library_path == passed
        assert pythonpath == f"/bundle:{REPO}"
