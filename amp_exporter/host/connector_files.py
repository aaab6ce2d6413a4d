"""The connector's own files: install marker, version, applied policy, definitions.

Their formats are not public, so parsing is tolerant: look for the element by its
last path components in any namespace, and treat "cannot tell" as unknown.
"""

from __future__ import annotations

import glob
import os
import re
import xml.etree.ElementTree as ET
from typing import Optional

from amp_exporter.host.paths import HostPaths, parse_cached

AMP_DIR = "opt/cisco/amp"
DAEMON_BINARY = "opt/cisco/amp/bin/ampdaemon"
GLOBAL_XML = "opt/cisco/amp/etc/global.xml"
POLICY_XML = "opt/cisco/amp/etc/policy.xml"
DEFAULT_DEFINITIONS_GLOBS = (
    "opt/cisco/amp/clamav/*.cvd",
    "opt/cisco/amp/clamav/*.cld",
    "opt/cisco/amp/var/clamav/*.cvd",
    "opt/cisco/amp/var/clamav/*.cld",
)
# Policy settings that decide whether faults 8, 9 and 16 can arise (path under config/).
POLICY_FEATURES = {
    "file_copy_move_monitoring": ("agent", "driver", "protmode", "file"),
    "device_flow_correlation": ("agent", "nfm", "enable"),
    "behavioral_protection": ("agent", "apde", "enable"),
}
# A connector version: 1.26.0.1182; bounded, so that int() of each part is cheap.
_VERSION = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9}){2,7}")
CVD_HEADER_SIZE = 512


def installed(paths: HostPaths) -> bool:
    """Raises PermissionError when the answer is hidden from us (not "not installed")."""
    try:
        os.stat(paths.root(DAEMON_BINARY))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].split(":")[-1]


def _find(root: ET.Element, names: tuple[str, ...]) -> Optional[str]:
    """Text of the first element (document order) whose path ends with `names`, namespaces
    ignored. A loop, not recursion: a hostile file nested thousands deep must not raise
    RecursionError."""
    stack: list[tuple[ET.Element, tuple[str, ...]]] = [(root, ())]
    while stack:
        elem, trail = stack.pop()
        trail = (*trail, _local(elem.tag))[-len(names):]
        if trail == names and elem.text is not None:
            return elem.text.strip()
        stack.extend((child, trail) for child in reversed(elem))
    return None


def parse_version(xml_text: str) -> Optional[str]:
    """The connector version from global.xml: the text of the first element named exactly
    `version` directly under an `agent` element (namespaces ignored), as the example hosts
    write `<config><agent><version>1.26.0.1182</version></agent></config>`. The file's
    format is not public, so anything else is unknown (None), never a guess: a dotted
    number elsewhere may be an engine's or a schema's, and a version taken below 1.25 would
    have a BTF host need kernel headers. Accepted only when it looks like a connector
    version (three to eight dot-separated integers). A loop over the tree, no recursion."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return None
    for elem in root.iter():
        if _local(elem.tag) != "agent":
            continue
        for child in elem:
            if _local(child.tag) == "version":
                text = (child.text or "").strip()
                return text if _VERSION.fullmatch(text) else None
    return None


def connector_version(paths: HostPaths) -> Optional[str]:
    try:
        return parse_cached(paths.root(GLOBAL_XML), parse_version)
    except FileNotFoundError:
        return None


def version_tuple(version: Optional[str]) -> Optional[tuple[int, ...]]:
    if not version:
        return None
    return tuple(int(x) for x in version.split(".")[:3])


def parse_policy(xml_text: str) -> dict[str, Optional[bool]]:
    """{feature: on/off/None} from the applied policy; raises ValueError on bad XML."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValueError(f"policy is not XML: {exc}") from exc
    features: dict[str, Optional[bool]] = {}
    for feature, names in POLICY_FEATURES.items():
        value = _find(root, names)
        features[feature] = None if value is None else value not in ("", "0", "false")
    return features


def policy_name(xml_text: str) -> tuple[Optional[str], Optional[str]]:
    root = ET.fromstring(xml_text)
    return _find(root, ("policy", "name")), _find(root, ("policy", "serial_number"))


def policy_features(paths: HostPaths) -> dict[str, Optional[bool]]:
    """Features of the applied policy; None for each one that cannot be read."""
    try:
        return parse_cached(paths.root(POLICY_XML), parse_policy, 8 << 20)
    except (FileNotFoundError, ValueError):
        return dict.fromkeys(POLICY_FEATURES)


def check_cvd_header(header: bytes, size: int) -> Optional[str]:
    """None for a plausible ClamAV database, else why not ('truncated', 'bad_header')."""
    if size < CVD_HEADER_SIZE or len(header) < CVD_HEADER_SIZE:
        return "truncated"
    text = header[:CVD_HEADER_SIZE].decode("ascii", errors="replace")
    fields = text.rstrip(" \x00").split(":")
    if fields[0] != "ClamAV-VDB" or len(fields) < 8:
        return "bad_header"
    if not (fields[2].isdigit() and fields[3].isdigit()):
        return "bad_header"
    if size <= CVD_HEADER_SIZE:
        return "truncated"  # a header with no signatures behind it
    return None


def definitions_files(paths: HostPaths, patterns: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        found.extend(sorted(glob.glob(str(paths.root(pattern)))))
    return found


def parse_cvd_header(header: bytes) -> dict[str, float]:
    """Version and build time (Unix seconds, field 9) from a ClamAV header, where present."""
    fields = header[:CVD_HEADER_SIZE].decode("ascii", errors="replace").rstrip(" \x00").split(":")
    values: dict[str, float] = {}
    if len(fields) > 2 and fields[2].isdigit():
        values["version"] = float(fields[2])
    if len(fields) > 8 and fields[8].strip().isdigit():
        values["built"] = float(fields[8].strip())
    return values
