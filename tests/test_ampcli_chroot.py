"""ampcli run in the host's root (--ampcli.chroot), with real processes and a real chroot.

A stand-in host root: an example host tree, plus what a /bin/sh script needs to run
chrooted into it (this machine's dash as bin/sh, sleep, and the shared libraries `ldd`
lists, at the paths it lists), a marker file at etc/amp-host-marker and a stand-in ampcli
that answers a status only when it runs in that root: as /opt/cisco/amp/bin/ampcli, with /
as its working directory and the marker at /etc/amp-host-marker. Anywhere else it does what
the real, dynamically linked ampcli does in a container's own root: prints 'Trying to
connect...' and exits 1."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, Scrape, builder, parse_exposition, run_exporter
from test_ampcli_runner import REAL_STATUS, pgrep, unique_seconds
from test_http import Server
from test_unprivileged import as_nobody

from amp_exporter.host.ampcli import (
    OUTPUT_LIMIT,
    AmpcliRunner,
    chroot_plan,
    lacking_in_root,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("ldd"),
    reason="needs root (chroot, and setpriv to drop to nobody), util-linux setpriv and ldd")

AMPCLI = "opt/cisco/amp/bin/ampcli"
# The status a real ampcli prints (test_ampcli_runner.REAL_STATUS: fault 18, Major), as a
# /bin/sh here-document: `cat` is not in the tree, so the shell's read and printf carry it.
IN_ROOT_ONLY = """\
#!/bin/sh
# Stand-in ampcli: answers only in the host root.
if [ "$0" != /opt/cisco/amp/bin/ampcli ] || [ ! -e /etc/amp-host-marker ] || \\
   [ "$(pwd)" != / ]; then
    echo '[logger] Set minimum reported log level to notice'
    echo 'Trying to connect...'
    exit 1
fi
while IFS= read -r line; do printf '%s\\n' "$line"; done <<'EOF'
""" + REAL_STATUS + "EOF\n"


def libraries(program: str) -> list[str]:
    """The shared objects `ldd PROGRAM` lists on this machine (loader included)."""
    out = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            path = words[words.index("=>") + 1]
        elif words and words[0].startswith("/"):
            path = words[0]
        else:
            continue  # linux-vdso.so.1: in the kernel
        if path.startswith("/"):
            found.append(path)
    return found


def install(tree: Path, program: str, as_path: str) -> None:
    """PROGRAM copied into TREE at AS_PATH, with its libraries at the paths ldd names."""
    for path in [*libraries(program), None]:
        target = tree / (as_path if path is None else path).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(program if path is None else path, target)  # follows links


def make_root(tree: Path) -> Path:
    install(tree, shutil.which("dash") or "/bin/dash", "/bin/sh")
    install(tree, shutil.which("sleep") or "/bin/sleep", "/bin/sleep")
    # dash gives a background job /dev/null as stdin, and a host has one.
    (tree / "dev").mkdir(exist_ok=True)
    os.mknod(tree / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (tree / "etc/amp-host-marker").write_text("the host root\n")
    set_ampcli(tree, IN_ROOT_ONLY)
    return tree


def set_ampcli(tree: Path, text: str) -> Path:
    path = tree / AMPCLI
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def public_dir():
    """A directory that the user nobody can traverse (pytest's tmp dirs are root-only)."""
    base = Path(tempfile.mkdtemp(prefix="amp-chroot-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


@pytest.fixture
def host_root(public_dir):
    """The stand-in host root, built on the healthy-ebpf-btf example host (ampdaemon runs)."""
    return make_root(builder.build(public_dir, ["healthy-ebpf-btf"])["healthy-ebpf-btf"])


def textfile(root: Path, *flags: str, argv: tuple[str, ...] | None = None,
             env: dict | None = None) -> tuple[Scrape, str]:
    if argv is None:
        result = run_exporter("textfile", "--output", "-", "--path.rootfs", str(root), *flags)
    else:
        result = subprocess.run([*argv, "-m", "amp_exporter", "textfile", "--output", "-",
                                 "--path.rootfs", str(root), *flags], capture_output=True,
                                text=True, timeout=60, cwd="/", env=env)
    assert result.returncode == 0, result.stderr
    return Scrape(parse_exposition(result.stdout)), result.stderr


def state(s: Scrape) -> str:
    [current] = [dict(k)["state"] for k, v in s["cisco_amp_connector_state"].items() if v == 1]
    return current


# -- through the exporter -----------------------------------------------------------------

def test_served_from_the_host_root_by_default(host_root):
    """--path.rootfs=TREE and nothing else: ampcli answers from the host root, and its
    faults are exported."""
    server = Server(host_root, "--ampcli.cache", "0")
    try:
        for _ in range(2):
            s = server.scrape()
            assert state(s) == "answering"
            assert s.success()["connector"] == 1 and not s.errors()
            assert s.value("cisco_amp_fault_active", fault_id="18") == 1
            assert s.value("cisco_amp_fault_severity", fault_id="18") == 2
            assert s.value("cisco_amp_connector_degraded") == 1
            assert s.value("amp_exporter_ampcli_success") == 1
            assert s.value("amp_exporter_ampcli_exit_code") == 0
    finally:
        assert server.stop() == 0
    assert "Traceback" not in "".join(server.lines)


def test_always_answers_too(host_root):
    s, _ = textfile(host_root, "--ampcli.chroot", "always")
    assert state(s) == "answering" and s.value("cisco_amp_fault_active", fault_id="18") == 1


def test_never_runs_it_in_the_exporters_own_root(host_root):
    """What every container saw before: ampcli outside the host root cannot connect."""
    s, log = textfile(host_root, "--ampcli.chroot", "never")
    assert state(s) == "not_answering"  # ampdaemon runs in the tree's proc
    assert s.errors() == {("connector", "exit_status")}
    assert s.value("amp_exporter_ampcli_exit_code") == 1
    assert s.value("cisco_amp_fault_active", fault_id="18") is None  # unknown, not 0
    assert "after printing 'Trying to connect...'" in log


def test_never_with_the_daemon_stopped(host_root):
    # The same stand-in on a host whose ampdaemon is gone: the daemon's state, as before.
    for comm in (host_root / "proc").glob("[0-9]*/comm"):
        if comm.read_text().strip().startswith("amp"):
            shutil.rmtree(comm.parent)
    s, _ = textfile(host_root, "--ampcli.chroot", "never")
    assert state(s) == "daemon_not_running"
    s, _ = textfile(host_root)
    assert state(s) == "answering"  # the stand-in still answers from the root


def test_check_reports_the_faults_from_the_host_root(host_root):
    result = run_exporter("check", "--path.rootfs", str(host_root))
    assert result.returncode == 1, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("PROBLEM:") and "fault 18 raised (major)" in first
    assert "Connector: installed, connected, DEGRADED mode" in result.stdout


def test_an_explicit_ampcli_outside_the_root_is_not_chrooted(host_root, public_dir):
    # auto: an --ampcli.path outside --path.rootfs is a program of the exporter's own root.
    outside = public_dir / "my-ampcli"
    outside.write_text(f'#!/bin/sh\n[ "$0" = {outside} ] || exit 9\n'
                       f"cat <<'EOF'\n{REAL_STATUS}EOF\n")
    outside.chmod(0o755)
    s, _ = textfile(host_root, "--ampcli.path", str(outside))
    assert state(s) == "answering" and s.value("amp_exporter_ampcli_exit_code") == 0
    # An explicit path inside the root is chrooted as the default one is.
    s, _ = textfile(host_root, "--ampcli.path", str(host_root / AMPCLI))
    assert state(s) == "answering"


def test_always_with_an_ampcli_outside_the_root_is_a_usage_error(host_root):
    result = run_exporter("textfile", "--output", "-", "--path.rootfs", str(host_root),
                          "--ampcli.chroot", "always", "--ampcli.path", "/bin/true")
    assert result.returncode == 2
    assert "--ampcli.path /bin/true is not under --path.rootfs" in result.stderr


def test_the_flag_is_documented_with_its_default():
    result = run_exporter("serve", "--help")
    text = " ".join(result.stdout.split())
    assert "--ampcli.chroot {auto,always,never}" in text
    assert "CAP_SYS_CHROOT" in text and "(default auto)" in text


# -- privilege -----------------------------------------------------------------------------

def test_without_cap_sys_chroot_the_state_is_unknown_and_says_why(host_root):
    argv, env = as_nobody()
    s, log = textfile(host_root, argv=argv, env=env)
    assert state(s) == "unknown"
    assert s.errors() == {("connector", "permission")}
    assert s.value("amp_exporter_ampcli_success") == 0
    assert s.value("amp_exporter_ampcli_exit_code") is None  # never started
    assert "CAP_SYS_CHROOT" in log and "reason=permission" in log and "Traceback" not in log
    # Other collectors still answer.
    assert s.success()["kernel"] == 1 and s.success()["scan_user"] == 1
    result = subprocess.run([*argv, "-m", "amp_exporter", "check", "--path.rootfs",
                             str(host_root)], capture_output=True, text=True, timeout=60,
                            cwd="/", env=env)
    assert result.returncode == 1
    assert result.stdout.startswith("UNKNOWN:")
    assert "ampcli: cannot run ampcli in the host root" in result.stdout
    assert "CAP_SYS_CHROOT" in result.stdout


def test_cap_sys_chroot_alone_is_enough(host_root):
    """The user nobody with only CAP_SYS_CHROOT (ambient, as a unit would give it)."""
    argv, env = as_nobody()
    argv = tuple("--inh-caps=-all,+sys_chroot" if a == "--inh-caps=-all" else a for a in argv)
    i = argv.index("--inh-caps=-all,+sys_chroot")
    argv = (*argv[:i + 1], "--ambient-caps=+sys_chroot", *argv[i + 1:])
    s, _ = textfile(host_root, argv=argv, env=env)
    assert state(s) == "answering"
    assert s.value("cisco_amp_fault_active", fault_id="18") == 1


# -- the runner's guarantees, chrooted ------------------------------------------------------

def runner(root: Path, timeout: float = 5, cache: float = 0, mode: str = "auto"):
    return AmpcliRunner(str(root / AMPCLI), timeout, cache, rootfs=str(root), chroot=mode)


def test_plain_run_reads_the_status(host_root):
    r = runner(host_root)
    assert r.root == str(host_root) and r.exec_path == "/opt/cisco/amp/bin/ampcli"
    result = r.status()
    assert result.ok and list(result.status.faults) == [18] and result.exit_code == 0


def test_the_deadline_kills_a_chrooted_ampcli_and_its_children(host_root):
    first, second = unique_seconds(), unique_seconds()
    set_ampcli(host_root, f"#!/bin/sh\nsleep {first} &\nexec sleep {second}\n")
    r = runner(host_root, timeout=1.0)
    got = []
    thread = threading.Thread(target=lambda: got.append(r.status()))
    start = time.monotonic()
    thread.start()
    deadline = time.monotonic() + 0.8
    while len(pgrep(f"sleep {first}") + pgrep(f"sleep {second}")) < 2:
        assert time.monotonic() < deadline, "the chrooted ampcli did not start"
        time.sleep(0.02)
    for pid in pgrep(f"sleep {first}") + pgrep(f"sleep {second}"):
        # Really in the host root, and holding nothing of the exporter's but its stdio.
        assert os.readlink(f"/proc/{pid}/root") == str(host_root)
        assert os.readlink(f"/proc/{pid}/cwd") == str(host_root)
        assert sorted(os.listdir(f"/proc/{pid}/fd"), key=int) == ["0", "1", "2"]
    thread.join(5)
    assert time.monotonic() - start < 2.0
    [result] = got
    assert result.error == "timeout" and result.exit_code is None
    time.sleep(0.2)
    assert pgrep(f"sleep {first}") == [] and pgrep(f"sleep {second}") == []


def test_children_left_behind_after_a_good_answer_are_killed(host_root):
    seconds = unique_seconds()
    set_ampcli(host_root, f"#!/bin/sh\nsleep {seconds} >/dev/null 2>&1 &\n"
               "printf 'Status: Connected\\nFaults: None\\n'\n")
    assert runner(host_root).status().ok
    time.sleep(0.2)
    assert pgrep(f"sleep {seconds}") == []


def test_output_is_capped(host_root):
    set_ampcli(host_root, "#!/bin/sh\nwhile :; do echo 'Status: Connected'; done\n")
    result = runner(host_root).status()
    assert result.error == "parse" and str(OUTPUT_LIMIT) in result.message


def test_exit_codes_are_kept(host_root):
    set_ampcli(host_root, IN_ROOT_ONLY + "exit 3\n")
    result = runner(host_root).status()
    assert result.ok and result.exit_code == 3 and "used" in result.message
    set_ampcli(host_root, "#!/bin/sh\necho 'Error: daemon not running'\nexit 4\n")
    result = runner(host_root).status()
    assert result.error == "exit_status" and result.exit_code == 4
    assert result.message == ("ampcli exited with status 4 after printing "
                              "'Error: daemon not running'")
    set_ampcli(host_root, "#!/bin/sh\necho 'Status: Connected'\nkill -9 $$\n")
    result = runner(host_root).status()
    assert result.exit_code is None and "killed by SIGKILL" in result.message


def test_concurrent_callers_share_one_chrooted_run(host_root):
    from conftest import concurrently

    set_ampcli(host_root, "#!/bin/sh\nsleep 0.3\nprintf 'Status: Connected\\nFaults: None\\n'\n")
    r = runner(host_root)
    results = concurrently(r.status, 20)
    assert r.runs == 1 and all(x.ok for x in results)


def test_cache_holds_between_runs(host_root):
    r = runner(host_root, cache=60)
    assert r.status().ok and r.status().ok and r.runs == 1


def test_missing_and_not_executable_in_the_root(host_root):
    (host_root / AMPCLI).chmod(0o644)
    result = runner(host_root, mode="always").status()
    assert result.error == "permission" and "not executable" in result.message
    (host_root / AMPCLI).unlink()
    result = runner(host_root).status()
    assert result.error == "missing" and result.exit_code is None
    assert "/opt/cisco/amp/bin/ampcli in the host root" in result.message


def test_a_vanished_root_is_missing(host_root, public_dir):
    r = runner(host_root)
    moved = public_dir / "elsewhere"
    host_root.rename(moved)
    try:
        result = r.status()
        assert result.error == "missing" and "cannot chroot into the host root" in result.message
    finally:
        moved.rename(host_root)
    assert r.status().ok


# -- auto on an example host tree, which has no /bin/sh -------------------------------------

def test_an_example_tree_runs_its_stand_in_outside(hosts):
    """The example hosts' stand-in is a script for the exporter's own /bin/sh, and their
    trees have none: auto does not chroot into a root that visibly lacks what ampcli needs
    (so ./scripts/run-example works, as root or not, with no flag); always does, and fails."""
    root = hosts["healthy-ebpf-btf"]
    r = runner(root)
    assert r.root == str(root)  # planned, then not taken: the root lacks /bin/sh
    assert lacking_in_root(str(root), r.exec_path) == "/bin/sh"
    assert r.status().ok
    result = runner(root, mode="always").status()
    assert result.error == "missing" and "interpreter or loader" in result.message


def test_lacking_in_root_follows_interpreters_and_loaders(public_dir):
    tree = public_dir / "t"
    set_ampcli_at = tree / AMPCLI
    set_ampcli_at.parent.mkdir(parents=True)
    set_ampcli_at.write_text("#!/bin/sh\n")
    assert lacking_in_root(str(tree), "/" + AMPCLI) == "/bin/sh"
    (tree / "bin").mkdir()
    shutil.copy("/bin/dash", tree / "bin/dash")
    os.symlink("/bin/dash", tree / "bin/sh")  # absolute: resolved in the tree, not here
    loader = next(p for p in libraries("/bin/dash") if "ld-linux" in p or "ld-" in p)
    assert lacking_in_root(str(tree), "/" + AMPCLI) == loader
    install(tree, "/bin/dash", "/bin/dash")
    assert lacking_in_root(str(tree), "/" + AMPCLI) is None
    # A dynamically linked ELF ampcli: its loader (PT_INTERP) must be there.
    shutil.copy("/bin/sleep", set_ampcli_at)
    assert lacking_in_root(str(tree), "/" + AMPCLI) is None
    (tree / loader.lstrip("/")).unlink()
    assert lacking_in_root(str(tree), "/" + AMPCLI) == loader
    # What cannot be told is not "lacking": the exec in the root will say what is wrong.
    set_ampcli_at.unlink()
    assert lacking_in_root(str(tree), "/" + AMPCLI) is None
    set_ampcli_at.write_bytes(b"\x7fELF garbage")
    assert lacking_in_root(str(tree), "/" + AMPCLI) is None
    set_ampcli_at.write_text("no interpreter line\n")
    assert lacking_in_root(str(tree), "/" + AMPCLI) is None


def test_chroot_plan(public_dir):
    host = str(public_dir)
    ampcli = os.path.join(host, AMPCLI)
    assert chroot_plan("/opt/cisco/amp/bin/ampcli", "/", "auto") == (
        None, "/opt/cisco/amp/bin/ampcli")
    assert chroot_plan(ampcli, host, "auto") == (host, "/opt/cisco/amp/bin/ampcli")
    assert chroot_plan(ampcli, host + "/", "auto") == (host, "/opt/cisco/amp/bin/ampcli")
    assert chroot_plan(ampcli, host, "never") == (None, ampcli)
    assert chroot_plan("/usr/bin/ampcli", host, "auto") == (None, "/usr/bin/ampcli")
    assert chroot_plan(host + "-other/ampcli", host, "auto") == (None, host + "-other/ampcli")
    assert chroot_plan("/opt/cisco/amp/bin/ampcli", "/", "always") == (
        "/", "/opt/cisco/amp/bin/ampcli")
    with pytest.raises(ValueError, match=r"not under --path\.rootfs"):
        chroot_plan("/usr/bin/ampcli", host, "always")
    # A root that is / by another name is not chrooted into in auto.
    link = public_dir / "slash"
    os.symlink("/", link)
    assert chroot_plan(str(link / AMPCLI), str(link), "auto") == (None, str(link / AMPCLI))
    # A relative root (./scripts/run-example passes build/hosts/NAME) is made absolute.
    rel = os.path.relpath(ampcli, REPO)
    old = os.getcwd()
    os.chdir(REPO)
    try:
        assert chroot_plan(rel, os.path.relpath(host, REPO), "auto") == (
            host, "/opt/cisco/amp/bin/ampcli")
    finally:
        os.chdir(old)
