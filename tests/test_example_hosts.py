"""The example host trees of examples/build_hosts.py are deterministic and realistic."""

from __future__ import annotations

import bz2
import importlib.util
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from amp_exporter.host.paths import HostPaths
from amp_exporter.host.processes import ProcessTable

BUILDER = Path(__file__).resolve().parent.parent / "examples" / "build_hosts.py"
CONNECTOR = ("ampdaemon", "ampscansvc", "ampupdater")
# The first example hosts: tests and golden files use these names.
LEGACY = ("healthy-ebpf-btf", "healthy-ebpf-headers", "healthy-kmod", "no-connector",
          "fault-5-scan-user", "fault-6-scan-restarting", "fault-7-scan-failed",
          "fault-8-file-monitoring", "fault-9-network-monitoring", "fault-11-kernel-headers",
          "fault-16-incompatible-kernel", "fault-18-overloaded", "fault-19-selinux",
          "multi-fault", "daemon-dead", "ampcli-silent")
# <distro><version>-<what>; the distro part is the os-release ID
NAME = re.compile(r"^(rhel|ol|amzn|ubuntu|debian)[0-9]+(-[a-z0-9]+)+$")
FAMILY_IDS = {"rhel": {"rhel", "centos", "ol", "amzn"}, "debian": {"debian", "ubuntu"}}
BPF_RULE = ("(allow unconfined_service_t self (bpf (map_create map_read map_write prog_load "
            "prog_run)))")


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


def os_release(root: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (root / "etc/os-release").read_text().splitlines()
             if "=" in line)
    return {k: v.strip('"') for k, v in pairs}


def loaded_modules(root: Path) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in
            (root / "proc/modules").read_text().splitlines()}


def held(root: Path, kind: str) -> list[dict[str, str]]:
    """fdinfo of every BPF program (kind "prog") or map the connector's processes hold."""
    out = []
    for pid in connector_pids(root).values():
        for fd in (root / "proc" / str(pid) / "fd").iterdir():
            if os.readlink(fd) == f"anon_inode:bpf-{kind}":
                info = (root / "proc" / str(pid) / "fdinfo" / fd.name).read_text()
                out.append(dict(line.split(":\t", 1) for line in info.splitlines()))
    return out


def healthy(name: str) -> bool:
    h = bh.HOSTS[name]
    return bool(h.connector and h.daemon and h.ampcli_answer == "status" and not h.faults)


def cil(path: Path) -> str:
    data = path.read_bytes()
    assert data.startswith(b"BZh"), path  # libsemanage keeps modules bzip2-compressed
    return bz2.decompress(data).decode()


def test_all_hosts_built(hosts: dict[str, Path]) -> None:
    assert list(hosts) == list(bh.HOSTS)
    assert all(bh.HOSTS[name].description for name in hosts)
    descriptions = [h.description for h in bh.HOSTS.values()]
    assert len(set(descriptions)) == len(descriptions)


def test_names(hosts: dict[str, Path]) -> None:
    assert set(LEGACY) <= set(bh.HOSTS)
    for name in set(bh.HOSTS) - set(LEGACY):
        match = NAME.match(name)
        assert match, name
        assert os_release(hosts[name])["ID"] == match.group(1), name


def test_every_family_healthy_and_faulty() -> None:
    ids = {}
    for name, h in bh.HOSTS.items():
        if name not in LEGACY:
            ids.setdefault(NAME.match(name).group(1), set()).add(bool(h.faults))
    assert set(ids) == {"rhel", "ol", "amzn", "ubuntu", "debian"}
    assert all(True in v and False in v for k, v in ids.items() if k != "debian")


def test_deterministic(hosts: dict[str, Path], tmp_path: Path) -> None:
    names = ["healthy-ebpf-btf", "fault-5-scan-user", "healthy-kmod"]
    again = bh.build(tmp_path, names)
    rebuilt = bh.build(tmp_path, names)  # rebuilding over an old tree replaces it
    for name in names:
        first = snapshot(hosts[name])
        assert first == snapshot(again[name]) == snapshot(rebuilt[name])


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert bh.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(bh.HOSTS)
    for line, (name, host) in zip(lines, bh.HOSTS.items()):
        listed, description = line.split(None, 1)
        assert listed == name and description == host.description


def test_cli_builds_named_hosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bh.main([str(tmp_path), "rhel7-kmod-healthy", "debian12-ebpf-core-healthy"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "debian12-ebpf-core-healthy", "rhel7-kmod-healthy"]
    assert "rhel7-kmod-healthy: " in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bh.main([str(tmp_path), "rhel7-no-such-host"])


def test_deterministic_every_host(hosts: dict[str, Path], tmp_path: Path) -> None:
    again = bh.build(tmp_path)
    for name in bh.HOSTS:
        assert snapshot(hosts[name]) == snapshot(again[name]), name


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


def _psutil_view(pid: int) -> tuple:
    proc = psutil.Process(pid)
    with proc.oneshot():
        cpu = proc.cpu_times()
        return (cpu.user, cpu.system, proc.memory_info().rss, proc.num_threads(),
                proc.uids().real, proc.create_time())


def _table_view(table: ProcessTable, pid: int) -> tuple:
    p = table._read_process(pid, "ampdaemon", 0)
    assert p is not None
    return (p.cpu_user_seconds, p.cpu_system_seconds, p.resident_bytes, p.threads, p.uid,
            p.start_time)


def test_process_table_reads_what_psutil_reads(hosts: dict[str, Path]) -> None:
    """psutil is not imported by the exporter, but it stays the reference: on every example
    host's connector processes, and on a live process, our figures are psutil's."""
    saved = psutil.PROCFS_PATH
    try:
        compared = 0
        for root in hosts.values():
            psutil.PROCFS_PATH = str(root / "proc")
            table = ProcessTable(HostPaths(str(root)))
            for pid in connector_pids(root).values():
                assert _table_view(table, pid) == pytest.approx(_psutil_view(pid)), root
                compared += 1
        assert compared > len(hosts)
        psutil.PROCFS_PATH = "/proc"
        # The test's own process, whose CPU time moves: read both, then psutil again.
        table = ProcessTable(HostPaths("/"))
        ours, theirs = _table_view(table, os.getpid()), _psutil_view(os.getpid())
        assert ours[2:] == pytest.approx(theirs[2:], rel=0.05)  # RSS may move a little
        assert ours[0] <= theirs[0] and ours[1] <= theirs[1]
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

    assert count(hosts["healthy-ebpf-btf"], "prog") == 6
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
    assert {"ampfsm", "ampavflt", "redirfs"} <= loaded and "ampnetworkflow" not in loaded
    store = hosts["fault-19-selinux"] / "var/lib/selinux/targeted/active/modules"
    assert (store / "disabled/cisco-secure-bpf").is_file()
    assert (store / "400/cisco-secure-bpf/cil").is_file()


def test_os_release_per_family(hosts: dict[str, Path]) -> None:
    for name, root in hosts.items():
        family, rel = bh.HOSTS[name].os.family, os_release(root)
        assert rel["ID"] in FAMILY_IDS[family], name
        assert rel["VERSION_ID"] and rel["PRETTY_NAME"] and rel["NAME"], name
        if rel["ID"] not in ("rhel", "debian"):  # derivatives say what they are like
            assert ("debian" if family == "debian" else "fedora") in rel["ID_LIKE"], name
    assert os_release(hosts["rhel7-kmod-healthy"])["VERSION_ID"] == "7.9"
    assert os_release(hosts["ol8-uek7-ebpf-core-healthy"])["PLATFORM_ID"] == "platform:el8"
    assert os_release(hosts["amzn2023-ebpf-core-healthy"])["PLATFORM_ID"] == "platform:al2023"
    assert os_release(hosts["ubuntu1804-ebpf-headers-healthy"])["VERSION_CODENAME"] == "bionic"
    assert os_release(hosts["debian12-ebpf-core-healthy"])["VERSION_CODENAME"] == "bookworm"


def test_kernel_releases(hosts: dict[str, Path]) -> None:
    expect = {"rhel7-kmod-healthy": r"3\.10\.0-1160\.[0-9.]+\.el7\.x86_64",
              "ol7-uek5-kmod-healthy": r"4\.14\.35-2047\.[0-9.]+\.el7uek\.x86_64",
              "ol7-uek6-ebpf-headers-healthy": r"5\.4\.17-2136\.[0-9.]+\.el7uek\.x86_64",
              "ol8-uek7-ebpf-core-healthy": r"5\.15\.0-200\.[0-9.]+\.el8uek\.x86_64",
              "amzn2-kmod-healthy": r"4\.14\.[0-9]+-[0-9.]+\.amzn2\.x86_64",
              "amzn2-kernel510-ebpf-core-healthy": r"5\.10\.[0-9]+-[0-9.]+\.amzn2\.x86_64",
              "amzn2023-ebpf-core-healthy": r"6\.1\.[0-9]+-[0-9.]+\.amzn2023\.x86_64",
              "ubuntu1804-ebpf-headers-healthy": r"4\.15\.0-213-generic",
              "ubuntu2204-ebpf-core-healthy": r"5\.15\.0-91-generic",
              "debian12-ebpf-core-healthy": r"6\.1\.0-17-amd64"}
    for name, pattern in expect.items():
        release = (hosts[name] / "proc/sys/kernel/osrelease").read_text().strip()
        assert re.fullmatch(pattern, release) and release == bh.HOSTS[name].kernel, name
        assert (hosts[name] / f"lib/modules/{release}/modules.dep").is_file()


def test_proc_modules_match_host(hosts: dict[str, Path]) -> None:
    for name, root in hosts.items():
        h, mods = bh.HOSTS[name], loaded_modules(root)
        assert set(mods) & set(bh.AMP_MODULES) == set(h.kmods), name
        for mod in h.kmods:
            assert mods[mod][4] == "Live" and mods[mod][6] == "(OE)", (name, mod)
        if h.kmods:  # the modules need jprobes, gone in 4.15
            assert bh.version(h.kernel)[:2] < (4, 15), name
        if bh.version(h.kernel)[0] >= 4:
            assert all(int(line[1]) % 4096 == 0 for line in mods.values()), name
        if "redirfs" in mods:
            assert mods["redirfs"][3] == ("ampavflt," if "ampavflt" in mods else "-"), name
        for line in mods.values():  # dependencies are modules that are loaded
            assert line[3] == "-" or set(line[3].rstrip(",").split(",")) <= set(mods), name
    assert set(loaded_modules(hosts["healthy-kmod"])) >= set(bh.ALL_KMODS)


def test_machinery_consistent(hosts: dict[str, Path]) -> None:
    """Each host's modules, programs, BTF, headers and faults tell one story."""
    for name, root in hosts.items():
        h = bh.HOSTS[name]
        if not (h.connector and h.daemon):
            continue
        progs, faults = held(root, "prog"), {f.id for f in h.faults}
        build = root / f"lib/modules/{h.kernel}/build"
        headers = build.is_symlink() and (root / os.readlink(build).lstrip("/")).is_dir()
        btf = (root / "sys/kernel/btf/vmlinux").is_file()
        assert btf == h.btf, name
        if healthy(name) and h.kmods:  # both features on: every module is loaded
            assert set(h.kmods) == set(bh.ALL_KMODS), name
        if healthy(name) and not bh.modules_era(h):
            assert progs and not h.kmods, name
        if healthy(name) and progs and not bh.core(h):  # eBPF built with the headers
            assert (root / os.readlink(build).lstrip("/") / "Makefile").is_file(), name
        if 8 in faults:
            assert not {"ampfsm", "ampavflt"} <= set(h.kmods), name
        if 9 in faults:
            assert "ampnetworkflow" not in h.kmods, name
        if 11 in faults:
            assert not progs and not headers and not bh.core(h), name
        if 19 in faults:
            assert not progs and h.selinux_mode == "enforcing", name
            assert h.bpf_module != "enabled" and not h.base_bpf_rule, name


def test_no_tc_classifiers(hosts: dict[str, Path]) -> None:
    """TC classifiers (sched_cls) serve network isolation: no example host is isolated."""
    for name, root in hosts.items():
        progs = held(root, "prog")
        assert all(p["prog_type"] != "3" for p in progs), name
        if healthy(name) and progs:
            assert {p["prog_type"] for p in progs} <= {"2", "5"}, name  # kprobes, tracepoints
            maps = {m["map_type"] for m in held(root, "map")}
            assert maps & {"27", "4"}, name  # the events ring buffer, or a perf event array
    core = held(hosts["debian12-ebpf-core-healthy"], "map")
    assert "27" in {m["map_type"] for m in core}


def test_rhel7_modules_and_ebpf(hosts: dict[str, Path]) -> None:
    root = hosts["rhel7-kmod-ebpf-healthy"]
    assert set(loaded_modules(root)) >= set(bh.ALL_KMODS)
    assert [p["prog_type"] for p in held(root, "prog")] == ["2", "2", "2"]
    release = bh.HOSTS["rhel7-kmod-ebpf-healthy"].kernel
    assert os.readlink(root / f"lib/modules/{release}/build") == f"/usr/src/kernels/{release}"
    issue = hosts["rhel7-ebpf-fault-8-secure-boot"]
    assert held(issue, "prog") and not set(loaded_modules(issue)) & set(bh.AMP_MODULES)
    efi = issue / f"sys/firmware/efi/efivars/SecureBoot-{bh.EFI_GUID}"
    assert efi.read_bytes()[4] == 1
    assert "<nfm><enable>0</enable></nfm>" in (
        issue / "opt/cisco/amp/etc/policy.xml").read_text()
    assert "Required key not available" in (issue / "var/log/cisco/ampdaemon.log").read_text()
    assert "module key" in (issue / "var/log/messages").read_text()
    nine = hosts["rhel7-kmod-fault-9-ampnetworkflow"]
    assert "ampnetworkflow: disagrees about version of symbol" in (
        nine / "var/log/messages").read_text()
    assert {"redirfs", "ampavflt", "ampfsm"} <= set(loaded_modules(nine))


def test_headers_layout(hosts: dict[str, Path]) -> None:
    for name, root in hosts.items():
        h = bh.HOSTS[name]
        build = root / f"lib/modules/{h.kernel}/build"
        if not build.is_symlink():
            assert h.headers == "absent", name
            continue
        expected = (f"/usr/src/linux-headers-{h.kernel}" if h.os.family == "debian"
                    else f"/usr/src/kernels/{h.kernel}")
        assert os.readlink(build) == expected, name
        assert (root / expected.lstrip("/")).is_dir() == (h.headers == "installed"), name
    uek6 = hosts["ol7-uek6-fault-11-kernel-headers"]
    build = uek6 / f"lib/modules/{bh.UEK6_KERNEL}/build"
    assert build.is_symlink() and not (uek6 / os.readlink(build).lstrip("/")).exists()
    ubuntu = hosts["ubuntu1804-fault-11-kernel-headers"]
    assert not (ubuntu / f"lib/modules/{bh.UBUNTU1804_KERNEL}/build").is_symlink()
    old = ubuntu / f"lib/modules/{bh.UBUNTU1804_OLD}/build"
    assert (ubuntu / os.readlink(old).lstrip("/") / "Makefile").is_file()


def test_selinux_store(hosts: dict[str, Path]) -> None:
    for name, root in hosts.items():
        h = bh.HOSTS[name]
        store = root / ("etc/selinux" if h.selinux == "etc" else "var/lib/selinux")
        modules = store / "targeted/active/modules"
        if not h.selinux:
            assert not (root / "etc/selinux").exists(), name
            continue
        for mod in modules.glob("[0-9]*/*"):
            text = cil(mod / "cil")
            assert text.startswith("(") and text.endswith(")\n"), mod
            assert bz2.decompress((mod / "hll").read_bytes()).startswith(b"\x8f\xff\x7c\xf9")
            assert (mod / "lang_ext").read_text() == "pp"
        base = cil(modules / "100/base/cil")
        assert "(class bpf (map_create" in base  # declared everywhere, allowed only so:
        assert (BPF_RULE in base) == h.base_bpf_rule, name
        bpf = modules / "400/cisco-secure-bpf/cil"
        assert bpf.exists() == (h.bpf_module != "none"), name
        if bpf.exists():
            assert BPF_RULE in cil(bpf)
        assert (modules / "disabled/cisco-secure-bpf").exists() == (h.bpf_module == "disabled")
        enforce = root / "sys/fs/selinux/enforce"
        config = (root / "etc/selinux/config").read_text()
        assert f"\nSELINUX={h.selinux_mode}\n" in config, name
        if h.selinux_mode == "disabled":
            assert not enforce.exists(), name
        else:
            assert enforce.read_text() == ("1" if h.selinux_mode == "enforcing" else "0"), name
    assert BPF_RULE in cil(hosts["rhel9-ebpf-core-base-policy-rule-healthy"]
                           / "var/lib/selinux/targeted/active/modules/100/base/cil")


def test_selinux_hosts(hosts: dict[str, Path]) -> None:
    no_module = hosts["rhel9-ebpf-core-no-selinux-module-healthy"]
    assert held(no_module, "prog") and not (
        no_module / "var/lib/selinux/targeted/active/modules/400/cisco-secure-bpf").exists()
    assert (no_module / "sys/fs/selinux/enforce").read_text() == "1"
    for name in ("rhel9-fault-19-selinux-module-missing",
                 "rhel7-kmod-ebpf-fault-19-no-selinux-module"):
        root = hosts[name]
        assert not held(root, "prog")
        avc = (root / "var/log/audit/audit.log").read_text()
        assert f"denied  {{ map_create }} for  pid={bh.PID_DAEMON} comm=\"ampdaemon\"" in avc
        assert "tclass=bpf" in avc
    rhel7 = hosts["rhel7-kmod-ebpf-fault-19-no-selinux-module"]
    assert (rhel7 / "etc/selinux/targeted/active/modules/100/base/cil").is_file()
    assert set(loaded_modules(rhel7)) >= set(bh.ALL_KMODS)


def test_login_users(hosts: dict[str, Path]) -> None:
    for name, user in (("amzn2-kmod-healthy", "ec2-user"), ("ol7-uek5-kmod-healthy", "opc"),
                       ("ubuntu2204-ebpf-core-healthy", "ubuntu"),
                       ("debian12-ebpf-core-healthy", "admin"), ("healthy-kmod", "admin")):
        passwd = (hosts[name] / "etc/passwd").read_text()
        assert f"\n{user}:x:1000:1000:" in passwd, name
        assert user == "admin" or "admin" not in passwd + (hosts[name] / "etc/group").read_text()
