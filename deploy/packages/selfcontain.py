"""Make a PyInstaller --onedir bundle need nothing of the host's C library (scripts/build-dist).

    python3 selfcontain.py BUNDLE PREFIX      # BUNDLE: the dir with the bootloader, _internal/
    python3 selfcontain.py --check BUNDLE PREFIX

BUNDLE is what PyInstaller wrote (BUNDLE/amp-exporter and BUNDLE/_internal/), PREFIX the
absolute path it is installed at (/usr/lib/amp-exporter). This copies every shared library
that `ldd` (the build machine's loader) lists for the bootloader, libpython and each
extension module into BUNDLE/_internal/ -- the dynamic loader, libc and the rest of glibc
included -- then, with patchelf, points the bootloader's PT_INTERP at
PREFIX/_internal/ld-linux-x86-64.so.2 and gives every ELF object in the bundle but the loader
(which needs nothing) a DT_RPATH of $ORIGIN-relative entries that lead to _internal/ (the
bootloader also PREFIX/_internal, for a root without /proc, where a program's $ORIGIN is
unknown) and the DF_1_NODEFLIB flag, so that:

  * the loader finds each library in the bundle: DT_RPATH is searched before LD_LIBRARY_PATH
    (DT_RUNPATH would be searched after it, so an LD_LIBRARY_PATH naming the host's libraries
    at start-up would mix the host's libc with our loader), and NODEFLIB makes it skip the
    loader's default directories (/lib, /usr/lib and their x86_64-linux-gnu), and the
    host's ld.so.cache entries in them, for whatever is not in the bundle. glibc's own
    dlopen()s search libc's RPATH first (libgcc_s, for thread exit, is bundled). What
    NODEFLIB leaves: a cache entry elsewhere (RHEL's /lib64) for a name the bundle lacks,
    which in practice is an NSS module the host's nsswitch.conf names (files and dns are
    built into glibc 2.34+): it loads against our libc or fails to and is skipped. The
    exporter looks up no users or groups;
  * nothing names a path outside the bundle but PREFIX, by design: the bundle runs only
    installed there.

--check verifies that, from the files alone (readelf): for every ELF object, each
DT_NEEDED lies in a directory of its DT_RPATH inside the bundle, the object has no
DT_RUNPATH and has NODEFLIB, and the bootloader's PT_INTERP is PREFIX's loader, present.
Prints one line per object, then every fault; exits 1 if there is any.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

LOADER = "ld-linux-x86-64.so.2"
BOOTLOADER = "amp-exporter"


def elf_files(bundle: Path) -> list[Path]:
    found = []
    for path in sorted(bundle.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def ldd(path: Path) -> dict[str, str]:
    """{name as NEEDED says it: the host path the build machine's loader resolves}."""
    result = subprocess.run(["ldd", str(path)], capture_output=True, text=True,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"})
    out = result.stdout + result.stderr
    if "statically linked" in out or "not a dynamic executable" in out:
        return {}
    if result.returncode != 0 or "not found" in out:
        raise SystemExit(f"selfcontain: ldd {path}: {out.strip()}")
    libs = {}
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"(\S+) => (/\S+) \(0x", line)
        if m:
            libs[m.group(1)] = m.group(2)
        elif re.match(r"/\S+ \(0x", line):  # the loader itself
            libs[os.path.basename(line.split()[0])] = line.split()[0]
    return libs


def dynamic(path: Path) -> tuple[list[str], list[str], list[str], str, str | None]:
    """(NEEDED, RPATH entries, RUNPATH entries, FLAGS_1, PT_INTERP) as readelf reads them."""
    out = subprocess.run(["readelf", "--wide", "--dynamic", "--program-headers", str(path)],
                         capture_output=True, text=True, check=True,
                         env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
                         ).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]*)\]", out)
    rpath = [e for m in re.findall(r"\(RPATH\)\s+Library rpath: \[([^\]]*)\]", out)
             for e in m.split(":")]
    runpath = [e for m in re.findall(r"\(RUNPATH\)\s+Library runpath: \[([^\]]*)\]", out)
               for e in m.split(":")]
    flags = " ".join(re.findall(r"\(FLAGS_1\)\s+Flags: (.*)", out))
    interp = re.search(r"Requesting program interpreter: ([^\]]*)\]", out)
    return needed, rpath, runpath, flags, interp.group(1) if interp else None


def rpath_for(path: Path, internal: Path, prefix: str) -> str:
    rel = os.path.relpath(internal, path.parent)
    rpath = "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"
    if path.parent == internal.parent:
        # The bootloader: the loader works out a program's $ORIGIN from /proc/self/exe,
        # and a root without /proc would leave it unknown. Libraries' $ORIGIN is the path
        # they were loaded from.
        rpath += f":{prefix}/_internal"
    return rpath


def bundle_libraries(bundle: Path) -> list[str]:
    """Copy into _internal/ what ldd lists and the bundle lacks, to a fixed point."""
    internal = bundle / "_internal"
    copied = []
    while True:
        present = {p.name for p in elf_files(bundle)}
        wanted = {}
        for path in elf_files(bundle):
            if path.name == LOADER:
                continue
            wanted.update(ldd(path))
        new = {name: src for name, src in wanted.items() if name not in present}
        if not new:
            return copied
        for name, src in sorted(new.items()):
            dest = internal / name
            shutil.copy2(os.path.realpath(src), dest)  # the file, not the link
            dest.chmod(0o755)  # as PyInstaller leaves the libraries it collects
            copied.append(f"{name} <- {os.path.realpath(src)}")


def patch(bundle: Path, prefix: str) -> None:
    internal = bundle / "_internal"
    for path in elf_files(bundle):
        if path.name == LOADER:
            continue  # the loader: no NEEDED, nothing to find; never rewritten
        argv = ["patchelf", "--force-rpath", "--set-rpath", rpath_for(path, internal, prefix)]
        if path == bundle / BOOTLOADER:
            argv += ["--set-interpreter", f"{prefix}/_internal/{LOADER}"]
        subprocess.run([*argv, str(path)], check=True)
        # Apart: patchelf 0.14 sets NODEFLIB along with --set-rpath only where the object
        # had no DT_FLAGS_1 yet.
        subprocess.run(["patchelf", "--no-default-lib", str(path)], check=True)


def check(bundle: Path, prefix: str) -> list[str]:
    """Faults, as lines; prints what each object resolves from where."""
    internal = bundle.resolve() / "_internal"
    faults = []
    elves = elf_files(bundle)
    if not (internal / LOADER).is_file():
        faults.append(f"no {LOADER} in _internal/")
    for path in elves:
        rel = path.relative_to(bundle)
        needed, rpath, runpath, flags, interp = dynamic(path)
        if path.name == LOADER:
            if needed:
                faults.append(f"{rel}: the loader needs {needed}")
            print(f"{rel}: the loader, needs nothing")
            continue
        dirs = []
        for entry in rpath:
            if entry == f"{prefix}/_internal" and path == bundle / BOOTLOADER:
                continue  # the bootloader's fallback, where the bundle is installed
            if not entry.startswith("$ORIGIN"):
                faults.append(f"{rel}: RPATH entry {entry} is not $ORIGIN-relative")
                continue
            d = Path(os.path.normpath(str(path.parent.resolve()) + entry[len("$ORIGIN"):]))
            if d != internal and internal not in d.parents:
                faults.append(f"{rel}: RPATH entry {entry} leads out of the bundle ({d})")
            dirs.append(d)
        if runpath:
            faults.append(f"{rel}: has a RUNPATH ({':'.join(runpath)}), searched after "
                          "LD_LIBRARY_PATH")
        if needed and not rpath:
            faults.append(f"{rel}: needs {needed} and has no RPATH")
        if "NODEFLIB" not in flags:
            faults.append(f"{rel}: no NODEFLIB: the host's cache and /lib would be searched")
        for name in needed:
            if "/" in name:
                faults.append(f"{rel}: NEEDED {name} is a path")
            elif not any((d / name).is_file() for d in dirs):
                faults.append(f"{rel}: NEEDED {name} is in none of {rpath}")
        if path == bundle / BOOTLOADER:
            want = f"{prefix}/_internal/{LOADER}"
            if interp != want:
                faults.append(f"{rel}: PT_INTERP {interp}, not {want}")
        elif interp is not None and path.name != "libc.so.6":
            # libc.so.6 can be run as a program (it prints its version); loaded as a
            # library its PT_INTERP is ignored. Anything else with one would be run.
            faults.append(f"{rel}: a program with PT_INTERP {interp}")
        print(f"{rel}: NEEDED {' '.join(needed) or '-'}; RPATH {':'.join(rpath) or '-'}; "
              f"FLAGS_1 {flags or '-'}" + (f"; INTERP {interp}" if interp else ""))
    if not any(p == bundle / BOOTLOADER for p in elves):
        faults.append(f"no {BOOTLOADER} bootloader in the bundle")
    return faults


def main(argv: list[str]) -> int:
    checking = argv[:1] == ["--check"]
    args = argv[1:] if checking else argv
    if len(args) != 2 or not args[1].startswith("/"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    bundle, prefix = Path(args[0]), args[1].rstrip("/")
    if not checking:
        for line in bundle_libraries(bundle):
            print(f"bundled {line}")
        patch(bundle, prefix)
        return 0
    faults = check(bundle, prefix)
    for fault in faults:
        print(f"FAULT: {fault}", file=sys.stderr)
    return 1 if faults else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
