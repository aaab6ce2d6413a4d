"""Parser for the output of `ampcli status`.

Real output looks like this (columns may also be aligned with spaces, and noise
lines such as `Trying to connect...` may come first)::

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
    ID 18 - Major: Connector event monitoring is overloaded. ...
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from amp_exporter.catalog import severity_level


class StatusParseError(ValueError):
    """The text is not `ampcli status` output."""


@dataclass
class ReportedFault:
    id: int
    severity: Optional[str] = None  # the connector's word, e.g. "Major"
    message: str = ""

    @property
    def level(self) -> Optional[int]:
        return severity_level(self.severity) if self.severity else None


@dataclass
class ConnectorStatus:
    fields: dict[str, str] = field(default_factory=dict)
    faults: dict[int, ReportedFault] = field(default_factory=dict)
    fault_counts: dict[str, int] = field(default_factory=dict)  # {"major": 1}

    def get(self, key: str) -> Optional[str]:
        return self.fields.get(_norm(key))

    @property
    def connected(self) -> Optional[bool]:
        value = self.get("status")
        return None if value is None else value.strip().lower() == "connected"

    @property
    def degraded(self) -> bool:
        return (self.get("mode") or "").strip().lower() == "degraded"

    @property
    def policy(self) -> tuple[Optional[str], Optional[str]]:
        """(name, serial) from `Policy: Name (#serial)`."""
        value = self.get("policy")
        if not value:
            return None, None
        match = re.match(r"^(.*)\(#(\d+)\)\s*$", value)  # greedy: linear on long values
        if match:
            return match.group(1).rstrip(), match.group(2)
        return value.strip(), None

    @property
    def last_scan_timestamp(self) -> Optional[float]:
        return parse_scan_time(self.get("last scan"))


# Linear-time patterns only (no lazy group before \s*): ampcli may print up to
# ampcli.OUTPUT_LIMIT bytes on one line, and a quadratic match would hang the scrape.
_KEY = re.compile(r"[A-Za-z][A-Za-z \-]*")
_FAULT_LINE = re.compile(r"^\s*ID\s+(\d+)\s*-\s*([A-Za-z]+)\s*:(.*)$")
_COUNT = re.compile(r"(?<!\d)(\d+)\s+([A-Za-z]+)")
# Keys that only `status` prints: at least one must be there for the text to count.
_STATUS_KEYS = {"status", "mode", "scan", "last scan", "policy", "faults", "fault ids"}
_MAX_FAULT_ID = 10_000  # label values stay bounded even if the connector prints nonsense
_MAX_FAULT_COUNT = 10**9


def _norm(key: str) -> str:
    return " ".join(key.lower().split())


def _small_int(digits: str, limit: int) -> Optional[int]:
    """int(digits) when it is at most `limit`, else None (int() refuses >4300 digits)."""
    if len(digits.lstrip("0")) > len(str(limit)):
        return None
    value = int(digits)
    return value if value <= limit else None


def _key_value(line: str) -> Optional[tuple[str, str]]:
    """'Key Words: value' -> (key, value); the key is the text before the first colon."""
    key, sep, value = line.partition(":")
    key = key.rstrip()
    if not sep or not _KEY.fullmatch(key):
        return None
    return key, value.strip()


def parse_status(text: str) -> ConnectorStatus:
    status = ConnectorStatus()
    listed_ids: list[int] = []
    for raw in text.splitlines():
        line = raw.replace("\x00", "").strip()
        if line.startswith("ampcli>"):
            line = line[len("ampcli>"):].strip()
        if not line:
            continue
        fault_match = _FAULT_LINE.match(line)
        if fault_match:
            fid = _small_int(fault_match.group(1), _MAX_FAULT_ID)
            if fid is not None:
                status.faults[fid] = ReportedFault(
                    fid, fault_match.group(2).capitalize(), fault_match.group(3).strip()
                )
            continue
        kv = _key_value(line)
        if not kv:
            continue  # noise such as "Trying to connect..." or "Connected."
        key, value = _norm(kv[0]), kv[1]
        if key in status.fields:
            continue
        status.fields[key] = value
        if key == "fault ids":
            listed_ids = [i for x in re.findall(r"\d+", value)
                          if (i := _small_int(x, _MAX_FAULT_ID)) is not None]
        elif key == "faults":
            for count, word in _COUNT.findall(value):
                n = _small_int(count, _MAX_FAULT_COUNT)
                if n is not None:
                    status.fault_counts[word.lower()] = n
    if not _STATUS_KEYS.intersection(status.fields):
        raise StatusParseError("no status fields found in ampcli output")
    for fid in listed_ids:
        status.faults.setdefault(fid, ReportedFault(fid))
    _fill_missing_severity(status)
    return status


def _fill_missing_severity(status: ConnectorStatus) -> None:
    """A fault listed in `Fault IDs` without its `ID n -` line takes the summary's severity
    when the summary names only one."""
    unknown = [f for f in status.faults.values() if f.severity is None]
    words = [w for w, n in status.fault_counts.items() if n > 0 and severity_level(w)]
    if unknown and len(words) == 1:
        for f in unknown:
            f.severity = words[0].capitalize()


def parse_scan_time(value: Optional[str]) -> Optional[float]:
    """'2023-06-19 02:02:03 PM' (host local time) -> Unix time; None when absent/unknown."""
    if not value:
        return None
    value = " ".join(value.split())
    for fmt in ("%Y-%m-%d %I:%M:%S %p", "%Y-%m-%d %H:%M:%S"):
        try:
            return time.mktime(datetime.strptime(value, fmt).timetuple())
        except (ValueError, OverflowError):
            continue
    return None
