"""The container image: its size, and start to first scrape, against a baseline measured in
the same run.

    .venv/bin/python bench/container.py [--image localhost/amp-exporter:test] [--runs 7]

Needs root, podman and an image built from deploy/container/Containerfile (tests/
test_container.py builds localhost/amp-exporter:test). Each run starts the image as
deploy/container/README.md says (host PID namespace, / at /host, the five capabilities,
the seccomp profile seccomp-ebpf.py writes) on a free loopback port and times `podman run`
to the first answered /metrics. The baseline is the same `podman run -d` of the same image
running its Python as the least server there is (it answers one request on the port, and
is polled the same way): what any server in this container costs to start and answer
here. The difference is the exporter's own start to its first scrape. Figures are
min / median / max over the runs. The host is read, never written; containers are
removed; nothing is written outside a temporary directory and podman's own store.

This machine's quirks (runc instead of crun, lower ulimits) are passed as in the tests.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUIRKS = ("--runtime", "runc")
ULIMITS = ("--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096")
AS_DOCUMENTED = (
    "--pid=host", "--network=host", "--user", "0", "--cap-drop=all",
    "--cap-add=DAC_READ_SEARCH", "--cap-add=SYS_PTRACE", "--cap-add=BPF",
    "--cap-add=PERFMON", "--cap-add=SYS_CHROOT", "--security-opt=no-new-privileges",
    "--read-only", "--security-opt=label=type:spc_t", "-v", "/:/host:ro,rslave",
    "-v", "/sys:/sys:ro", "-v", "/sys/kernel/tracing:/sys/kernel/tracing:ro",
    "-v", "/lib/modules:/lib/modules:ro", "-v", "/usr/src:/usr/src:ro")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *QUIRKS, *args], capture_output=True, text=True,
                          check=check, timeout=300)


# The baseline's server: the image's Python answering one HTTP request on PORT, the least
# any server in this image can do before its first answer.
BARE_SERVER = ("import socket,sys\n"
               "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
               "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
               "c, _ = s.accept(); c.recv(65536)\n"
               "c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n'); c.close()\n")


def run_to_first_answer(image: str, *args: str) -> float:
    """Seconds from `podman run -d` of IMAGE with ARGS (given the port) to the first
    answered GET /metrics on loopback; the container is removed after."""
    port, name = free_port(), f"amp-exporter-bench-{os.getpid()}"
    podman("rm", "-f", name, check=False)
    began = time.monotonic()
    try:
        podman("run", "-d", "--name", name, *ULIMITS, *AS_DOCUMENTED,
               *(a.format(port=port) for a in args))
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5):
                    return time.monotonic() - began
            except OSError:
                if time.monotonic() - began > 60:
                    raise SystemExit("no scrape answered within 60 s") from None
                time.sleep(0.005)
    finally:
        podman("rm", "-f", "-t", "1", name, check=False)


def baseline(image: str) -> float:
    return run_to_first_answer(image, "--entrypoint", "/opt/amp-exporter/bin/python", image,
                               "-c", BARE_SERVER, "{port}")


def first_scrape(image: str, profile: Path) -> float:
    return run_to_first_answer(image, f"--security-opt=seccomp={profile}", image, "serve",
                               "--path.rootfs=/host", "--web.listen-address=127.0.0.1:{port}")


def spread(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{min(ms):7.0f} {statistics.median(ms):7.0f} {max(ms):7.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="localhost/amp-exporter:test")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/container.py: needs root (the documented run is rootful)")
    if podman("image", "exists", args.image, check=False).returncode != 0:
        raise SystemExit(f"no image {args.image}: build it (tests/test_container.py does)")
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "seccomp.json"
        profile.write_text(subprocess.run(
            [sys.executable, str(REPO / "deploy/container/seccomp-ebpf.py")],
            capture_output=True, text=True, check=True).stdout)
        base, ours = [], []
        for _ in range(args.runs):  # interleaved: the machine's noise falls on both
            base.append(baseline(args.image))
            ours.append(first_scrape(args.image, profile))
    size = podman("image", "inspect", "--format", "{{.Size}}", args.image).stdout.strip()
    print(f"image {args.image}: {int(size) / 1e6:.0f} MB")
    print(f"{'ms over ' + str(args.runs) + ' runs':34} {'min':>7} {'median':>7} {'max':>7}")
    print(f"{'baseline: podman run, bare server':34} {spread(base)}")
    print(f"{'amp-exporter: podman run to scrape':34} {spread(ours)}")
    ratio = statistics.median(ours) / statistics.median(base)
    print(f"ratio of medians: {ratio:.2f}; the exporter's own start to first scrape: "
          f"{(statistics.median(ours) - statistics.median(base)) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
