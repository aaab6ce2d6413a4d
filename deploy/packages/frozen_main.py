"""The entry point of the self-contained amp-exporter that scripts/build-dist builds with
PyInstaller --onedir (then deploy/packages/selfcontain.py bundles glibc). The same command
line as `amp-exporter`, and one private first argument: ampcli's chroot helper
(amp_exporter.host.ampcli.FROZEN_HELPER_ARG), which a Python would run as
`python -I -S -c CODE` and this program runs as itself. (The bootloader's LD_LIBRARY_PATH,
into the bundle's _internal/, is undone for the host's Python by
amp_exporter.host.events.child_env; ampcli and the helper get a fixed environment.)"""

import sys


def main() -> None:
    from amp_exporter.host import ampcli

    if len(sys.argv) > 1 and sys.argv[1] == ampcli.FROZEN_HELPER_ARG:
        ampcli.run_frozen_helper(sys.argv[2:])
    from amp_exporter.cli import main as cli_main

    raise SystemExit(cli_main())


if __name__ == "__main__":
    main()
