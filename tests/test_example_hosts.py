"""The example host trees of examples/build_hosts.py are deterministic and realistic."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

BUILDER = Path(__file__).resolve().parent.parent / "examples" / "build_hosts.py"
CONNECTOR = ("ampdaemon", "ampscansvc", "ampupdater")


def _load():
    spec = importlib.util.spec_from_file_location("build_hosts", BUILDER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it loads
    spec.loader.exec_module(module)
    return module


bh = _load()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return bh.build(tmp_path_factory.mktemp("hosts"))


def snapshot(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("f", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


def connector_pids(root: Path) -> dict[str, int]:
    pids = {}
    for entry in (root / "proc").iterdir():
        if entry.name.isdigit():
            comm = (entry / "comm").read_text().strip()
            if comm in CONNECTOR:
                pids[comm] = int(entry.name)
    return pids


def test_all_hosts_built(hosts: dict[str, Path]) -> None:
    assert list(hosts) == list(bh.HOSTS)
    assert all(bh.HOSTS[name].description for name in hosts)


def test_deterministic(hosts: dict[str, Path], tmp_path: Path) -> None:
    names = ["healthy-ebpf-btf", "fault-5-scan-user", "healthy-kmod"]
    again = bh.build(tmp_path, names)
    rebuilt = bh.build(tmp_path, names)  # rebuilding over an old tree replaces it
    for name in names:
        first = snapshot(hosts[name])
        assert first == snapshot(again[name]) == snapshot(rebuilt[name])


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert bh.main(["--list"]) == 0
    assert "fault-19-selinux" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(bh.HOSTS))
def test_ampcli_status(hosts: dict[str, Path], name: str) -> None:
    ampcli = hosts[name] / "opt/cisco/amp/bin/ampcli"
    if name == "no-connector":
        assert not (hosts[name] / "opt/cisco").exists()
        return
    host = bh.HOSTS[name]
    if host.ampcli_answer == "hang":
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(["/bin/sh", str(ampcli), "status"], capture_output=True,
                           timeout=1, check=False)
        return
    res = subprocess.run(["/bin/sh", str(ampcli), "status"], capture_output=True, text=True,
                         timeout=5, check=False)
    if host.ampcli_answer == "no_daemon":
        assert res.returncode == 1 and res.stdout.rstrip().endswith("Trying to connect...")
        return
    assert res.returncode == 0 and "Status:" in res.stdout
    faults = bh.HOSTS[name].faults
    ids = [line.split()[1] for line in res.stdout.splitlines() if line.startswith("ID ")]
    assert ids == [str(f.id) for f in faults]
    bad = subprocess.run(["/bin/sh", str(ampcli), "bogus"], capture_output=True, text=True,
                         timeout=5, check=False)
    assert bad.returncode == 1


def test_multi_fault_line(hosts: dict[str, Path]) -> None:
    out = subprocess.run(["/bin/sh", str(hosts["multi-fault"] / "opt/cisco/amp/bin/ampcli"),
                          "status"], capture_output=True, text=True, check=True).stdout
    assert "Faults: 1 Critical, 1 Major\nFault IDs: 7, 23\n" in out


def test_proc_stat_has_52_fields(hosts: dict[str, Path]) -> None:
    for root in hosts.values():
        for entry in (root / "proc").iterdir():
            if not entry.name.isdigit():
                continue
            data = (entry / "stat").read_text()
            comm = data[data.index("(") + 1 : data.rindex(")")]
            rest = data[data.rindex(")") + 2 :].split()
            assert comm == (entry / "comm").read_text().strip()
            assert 2 + len(rest) == 52, entry
            assert int(rest[19]) <= bh.UPTIME * bh.HZ  # starttime within the uptime


def test_psutil_reads_connector_processes(hosts: dict[str, Path]) -> None:
    saved = psutil.PROCFS_PATH
    try:
        for name, root in hosts.items():
            psutil.PROCFS_PATH = str(root / "proc")
            pids = connector_pids(root)
            host = bh.HOSTS[name]
            assert ("ampdaemon" in pids) == (host.connector is not None and host.daemon)
            assert ("ampscansvc" in pids) == bool(host.connector and host.scan_pid)
            for comm, pid in pids.items():
                proc = psutil.Process(pid)
                assert proc.name() == comm
                assert proc.cpu_times().user > 0
                assert proc.memory_info().rss > 0
                assert proc.num_threads() >= 1
                assert bh.BTIME < proc.create_time() < bh.BTIME + bh.UPTIME
                if comm == "ampscansvc":
                    expected = 0 if host.scan_root else host.os.scan_uid
                    assert proc.uids().real == expected
                    assert proc.ppid() == pids["ampdaemon"]
    finally:
        psutil.PROCFS_PATH = saved


def test_daemon_socket_matches_tcp(hosts: dict[str, Path]) -> None:
    root = hosts["healthy-ebpf-btf"]
    fds = root / "proc" / str(bh.PID_DAEMON) / "fd"
    inodes = {os.readlink(fd)[8:-1] for fd in fds.iterdir()
              if os.readlink(fd).startswith("socket:[")}
    rows = [line.split() for line in (root / "proc/net/tcp").read_text().splitlines()[1:]]
    cloud = [r for r in rows if r[2].endswith(":01BB") and r[3] == "01"]
    assert len(cloud) == 1 and cloud[0][9] in inodes


def test_bpf_fds(hosts: dict[str, Path]) -> None:
    def count(root: Path, kind: str) -> int:
        fd_dir = root / "proc" / str(bh.PID_DAEMON) / "fd"
        return sum(os.readlink(fd) == f"anon_inode:bpf-{kind}" for fd in fd_dir.iterdir())

    assert count(hosts["healthy-ebpf-btf"], "prog") == 8
    assert count(hosts["healthy-ebpf-btf"], "map") == 6
    assert count(hosts["healthy-ebpf-headers"], "prog") > 0
    for name in ("healthy-kmod", "fault-11-kernel-headers", "fault-19-selinux"):
        assert count(hosts[name], "prog") == 0
    info = (hosts["healthy-ebpf-btf"] / "proc" / str(bh.PID_DAEMON) / "fdinfo/12").read_text()
    assert "prog_type:\t2\n" in info and "prog_id:\t" in info


def test_secure_boot_and_headers(hosts: dict[str, Path]) -> None:
    for name, root in hosts.items():
        efi = root / "sys/firmware/efi"
        var = efi / f"efivars/SecureBoot-{bh.EFI_GUID}"
        if bh.HOSTS[name].secure_boot is None:
            assert not efi.exists()
        else:
            data = var.read_bytes()
            assert len(data) == 5 and data[:4] == b"\x06\x00\x00\x00"
            assert data[4] == int(bh.HOSTS[name].secure_boot)
    release = bh.HOSTS["fault-11-kernel-headers"].kernel
    build = hosts["fault-11-kernel-headers"] / f"lib/modules/{release}/build"
    assert build.is_symlink() and not build.exists()
    good = hosts["healthy-ebpf-headers"] / f"lib/modules/{release}/build"
    assert (hosts["healthy-ebpf-headers"] / os.readlink(good).lstrip("/") / "Makefile").is_file()


def test_modes_under_opt_cisco(hosts: dict[str, Path]) -> None:
    for name, root in hosts.items():
        for dirpath, dirnames, _ in os.walk(root / "opt/cisco"):
            for d in dirnames:
                path = Path(dirpath, d)
                mode = stat.S_IMODE(path.lstat().st_mode)
                special = name == "fault-5-scan-user" and path == root / "opt/cisco/amp/etc"
                assert mode == (0o777 if special else 0o755), path
        assert stat.S_IMODE((root / "etc/passwd").stat().st_mode) == 0o644


def test_fault_specific_facts(hosts: dict[str, Path]) -> None:
    assert "cisco-amp-scan-svc" not in (hosts["fault-5-scan-user"] / "etc/passwd").read_text()
    assert "USERGROUPS_ENAB no" in (hosts["fault-5-scan-user"] / "etc/login.defs").read_text()
    daily = hosts["fault-7-scan-failed"] / "opt/cisco/amp/clamav/daily.cvd"
    assert daily.stat().st_size == 300
    main = (hosts["healthy-ebpf-btf"] / "opt/cisco/amp/clamav/main.cvd").read_bytes()
    assert main.startswith(b"ClamAV-VDB:") and len(main[:512].decode().split(":")) == 9
    meminfo = (hosts["fault-7-scan-failed"] / "proc/meminfo").read_text()
    assert "MemAvailable:     184320 kB" in meminfo
    modules = (hosts["fault-9-network-monitoring"] / "proc/modules").read_text()
    loaded = {line.split()[0] for line in modules.splitlines()}
    assert "ampfsm" in loaded and "ampavflt" not in loaded
    store = hosts["fault-19-selinux"] / "var/lib/selinux/targeted/active/modules"
    assert (store / "disabled/cisco-secure-bpf").is_file()
    assert (store / "400/cisco-secure-bpf/cil").is_file()
