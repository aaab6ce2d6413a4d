"""ampcli status parsing: the real format, aligned columns, noise, garbage."""

import time
from datetime import datetime

import pytest

from amp_exporter.host.status import StatusParseError, parse_scan_time, parse_status

REAL = """\
Status: Connected
Mode: Degraded
Scan: Ready for scan
Last Scan: 2023-06-19 02:02:03 PM
Policy: Audit Policy for FireAMP Linux (#1)
Command-line: Enabled
Orbital: Disabled
Behavioural Protection: Protect
Faults: 1 Major
Fault IDs: 18
ID 18 - Major: Connector event monitoring is overloaded. Investigate the most active processes.
"""


def test_real_output_from_cisco_docs():
    s = parse_status(REAL)
    assert s.connected is True
    assert s.degraded is True
    assert s.policy == ("Audit Policy for FireAMP Linux", "1")
    assert s.get("Behavioural Protection") == "Protect"
    assert list(s.faults) == [18]
    assert s.faults[18].severity == "Major" and s.faults[18].level == 2
    assert s.faults[18].message.startswith("Connector event monitoring is overloaded")
    assert s.fault_counts == {"major": 1}
    expected = time.mktime(datetime(2023, 6, 19, 14, 2, 3).timetuple())
    assert s.last_scan_timestamp == expected


def test_aligned_columns_noise_and_prompt():
    text = (
        "[logger] Set minimum reported log level to notice\nTrying to connect...\nConnected.\n"
        "ampcli> status\n"
        "Status:          Disconnected\nMode:            Normal\n"
        "Faults:          1 Critical, 1 Major\nFault IDs:       7, 23\n"
        "ID 7  - Critical: Scan service failed to start.\nID 23 - Major: Something new.\n"
    )
    s = parse_status(text)
    assert s.connected is False and s.degraded is False
    assert {k: v.level for k, v in s.faults.items()} == {7: 3, 23: 2}
    assert s.fault_counts == {"critical": 1, "major": 1}


def test_fault_listed_without_detail_line_takes_summary_severity():
    s = parse_status("Status: Connected\nFaults: 1 Critical\nFault IDs: 11\n")
    assert s.faults[11].severity == "Critical"


def test_fault_listed_without_detail_and_mixed_summary_has_unknown_severity():
    s = parse_status("Status: Connected\nFaults: 1 Critical, 1 Major\nFault IDs: 11, 7\n")
    assert s.faults[11].level is None and s.faults[7].level is None


@pytest.mark.parametrize("none_line", ["Faults: None\nFault IDs: None\n", "Faults: 0\n", ""])
def test_no_faults_in_any_spelling(none_line):
    s = parse_status("Status: Connected\nMode: Normal\n" + none_line)
    assert s.faults == {}


@pytest.mark.parametrize("text", ["", "\x00\x01\xff garbage", "Unknown command\n",
                                  "Error: could not connect to daemon\n"])
def test_garbage_is_a_parse_error(text):
    with pytest.raises(StatusParseError):
        parse_status(text)


def test_absurd_fault_ids_are_dropped_to_keep_labels_bounded():
    s = parse_status("Status: Connected\nFault IDs: 18, 99999999\n")
    assert list(s.faults) == [18]


@pytest.mark.parametrize("value", [None, "", "never", "2023-13-45 99:00:00 PM"])
def test_unknown_scan_times(value):
    assert parse_scan_time(value) is None


def test_24_hour_scan_time():
    assert parse_scan_time("2024-01-02 13:04:05") == time.mktime(
        datetime(2024, 1, 2, 13, 4, 5).timetuple())
