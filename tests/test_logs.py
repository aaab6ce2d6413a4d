"""The logs collector: incremental reads, rotation, truncation, partial lines."""

from __future__ import annotations

import os

from test_restarts import exporter_for, scrape

LINE = b"Nov 25 05:00:00 host ampdaemon[1187]: %s: something happened\n"


def lines(s, level, log="ampdaemon"):
    return s.value("cisco_amp_log_lines_total", log=log, level=level)


def test_appends_rotation_truncation_and_partial_lines(host_copy):
    root = host_copy("healthy-ebpf-btf")
    log = root / "var/log/cisco/ampdaemon.log"
    exporter = exporter_for(root, "--collector.disable-defaults", "--collector.logs")
    try:
        first = scrape(exporter)
        assert lines(first, "info") == 0  # history is not replayed
        with open(log, "ab") as f:
            f.write(LINE % b"Error" * 3 + LINE % b"Warning" + LINE % b"Info" + b"no level\n")
            f.write(b"Nov 25 05:00:01 host ampdaemon[1187]: Error: half a li")
        s = scrape(exporter)
        assert (lines(s, "error"), lines(s, "warning"), lines(s, "info"), lines(s, "other")) == (
            3, 1, 1, 1)
        with open(log, "ab") as f:
            f.write(b"ne\n")  # the partial line is counted once, when complete
        assert lines(scrape(exporter), "error") == 4
        # logrotate: rename and create a new file
        os.rename(log, str(log) + ".1")
        log.write_bytes(LINE % b"Critical")
        s = scrape(exporter)
        assert lines(s, "critical") == 1
        assert s.value("cisco_amp_log_rotations_total", log="ampdaemon") == 1
        # copytruncate: same inode, shorter file
        with open(log, "r+b") as f:
            f.truncate(0)
        s = scrape(exporter)
        assert s.value("cisco_amp_log_rotations_total", log="ampdaemon") == 2
        assert s.value("cisco_amp_log_size_bytes", log="ampdaemon") == 0
        log.write_bytes(LINE % b"Debug")
        assert lines(scrape(exporter), "debug") == 1
        # the log disappears: no series for it, and no failure
        log.unlink()
        s = scrape(exporter)
        assert s.value("cisco_amp_log_size_bytes", log="ampdaemon") is None
        assert s.success() == {"logs": 1}
    finally:
        exporter.close()
