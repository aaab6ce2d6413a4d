"""Unreadable host files, tested as an unprivileged user (root ignores permissions): the
collector that cannot see says so (success 0, an error reason, a log line); the others
still answer; nothing crashes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, Scrape, builder, parse_exposition

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"),
    reason="needs root (to drop to nobody with setpriv) and util-linux setpriv")


@pytest.fixture
def public_host():
    """A host tree that the user nobody can traverse (pytest's tmp dirs are root-only)."""
    base = Path(tempfile.mkdtemp(prefix="amp-unpriv-"))
    base.chmod(0o755)
    try:
        yield lambda name: builder.build(base, [name])[name]
    finally:
        shutil.rmtree(base)


def _reachable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def as_nobody() -> tuple[tuple[str, ...], dict]:
    """(argv that runs our python as nobody, its environment)."""
    repo, python, wrap = str(REPO), sys.executable, []
    if not _reachable_by_others(REPO):
        # A checkout under /root (mode 0700): show it to nobody at /mnt, in a private
        # mount namespace, rather than loosen the permissions of the machine's directories.
        repo, python = "/mnt", sys.executable.replace(str(REPO), "/mnt", 1)
        wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /mnt && exec "$@"', str(REPO)]
    argv = (*wrap, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "--inh-caps=-all", python)
    return argv, {"PATH": os.environ["PATH"], "PYTHONPATH": repo, "TZ": "UTC"}


def scrape_as_nobody(root: Path, *flags: str) -> tuple[Scrape, str]:
    argv, env = as_nobody()
    result = subprocess.run(
        [*argv, "-m", "amp_exporter", "textfile", "--output", "-", "--path.rootfs", str(root),
         *flags], capture_output=True, text=True, timeout=60, cwd="/", env=env)
    assert result.returncode == 0, result.stderr
    return Scrape(parse_exposition(result.stdout)), result.stderr


def test_unreadable_passwd(public_host):
    root = public_host("healthy-ebpf-btf")
    (root / "etc/passwd").chmod(0o600)
    s, log = scrape_as_nobody(root)
    assert s.success()["scan_user"] == 0
    assert s.success()["kernel"] == 1 and s.success()["connector"] == 1
    assert s.value("amp_exporter_collector_errors_total", collector="scan_user",
                   reason="permission") == 1
    assert s.causes(5) == {}  # left out, not guessed
    assert s.causes(7)  # other causes still exported
    assert "permission denied" in log and "collector=scan_user" in log


def test_process_fds_of_another_user(public_host):
    root = public_host("healthy-ebpf-btf")
    (root / "proc/1187/fd").chmod(0o700)
    s, log = scrape_as_nobody(root)
    assert s.success()["bpf"] == 0
    assert s.value("cisco_amp_bpf_programs", process="ampdaemon") is None
    assert s.value("cisco_amp_bpf_programs", process="ampscansvc") == 0
    assert s.success()["processes"] == 1
    assert s.value("cisco_amp_process_up", process="ampdaemon") == 1
    assert "CAP_SYS_PTRACE" in log


def test_root_only_selinux_store(public_host):
    root = public_host("healthy-ebpf-btf")
    (root / "var/lib/selinux/targeted/active").chmod(0o700)
    s, log = scrape_as_nobody(root)
    assert s.success()["selinux"] == 0
    assert s.causes(19) == {}
    assert "module store" in log


def test_ampcli_not_executable_by_us(public_host):
    root = public_host("healthy-ebpf-btf")
    (root / "opt/cisco/amp/bin/ampcli").chmod(0o700)
    s, _ = scrape_as_nobody(root)
    assert s.success()["connector"] == 0
    assert s.value("amp_exporter_collector_errors_total", collector="connector",
                   reason="permission") == 1
    assert s.value("cisco_amp_connector_installed") == 1


def test_unreadable_tree_root(public_host):
    root = public_host("healthy-ebpf-btf")
    for sub in ("etc", "proc", "sys", "opt", "var"):
        (root / sub).chmod(0o700)
    s, log = scrape_as_nobody(root)
    # Nothing readable: every collector says it failed (not "not installed"), none crashes.
    assert set(s.success().values()) == {0}
    assert "cisco_amp_connector_installed" not in s
    assert {reason for _, reason in s.errors()} == {"permission"}
    assert "Traceback" not in log


def test_any_host_entry_turning_unreadable(public_host):
    """Each file and directory of the host in turn loses its permissions (mode 000) under an
    exporter running as nobody: every scrape is complete, a collector that cannot see says
    'permission' or 'missing', and all is well again once restored."""
    from test_fault_injection import _host_entries
    from test_http import Server

    root = public_host("healthy-ebpf-btf")
    argv, env = as_nobody()
    server = Server(root, "--ampcli.cache", "0", argv0=argv, env=env)
    tried, said = 0, set()
    try:
        assert set(server.scrape().success().values()) == {1.0}
        for path in _host_entries(root):
            if path.is_symlink():
                continue  # a link's own mode means nothing
            mode = path.stat().st_mode & 0o7777
            path.chmod(0)
            try:
                s = server.scrape()
            finally:
                path.chmod(mode)
            tried += 1
            reasons = {reason for _, reason in s.errors()}
            # Not 'internal' (our bug), nor 'parse' (blaming the content of what we could
            # not even read: what generation detection said before this test).
            assert reasons <= {"permission", "missing"}, (path.relative_to(root), reasons)
            said |= reasons
        assert set(server.scrape().success().values()) == {1.0}
    finally:
        assert server.stop() == 0
    print(f"{tried} entries made unreadable; reasons given: {sorted(said)}")
    assert tried > 60 and "permission" in said
    assert "Traceback" not in "".join(server.lines)
