"""Parsers and readers of host files, on small trees laid out as real hosts are."""

import os

import pytest

from amp_exporter.host import accounts, connector_files, linux, selinux
from amp_exporter.host.paths import HostPaths


def write(root, rel, text="", mode=None):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


# -- host paths ----------------------------------------------------------------------------

def test_absolute_symlinks_resolve_inside_the_root(tmp_path):
    write(tmp_path, "usr/src/kernels/5.14.0/Makefile")
    link = tmp_path / "lib/modules/5.14.0/build"
    link.parent.mkdir(parents=True)
    link.symlink_to("/usr/src/kernels/5.14.0")
    paths = HostPaths(str(tmp_path))
    assert paths.resolve("/lib/modules/5.14.0/build") == tmp_path / "usr/src/kernels/5.14.0"
    assert linux.headers_installed(paths, "5.14.0")


def test_dangling_and_looping_links_do_not_resolve(tmp_path):
    (tmp_path / "lib/modules/r").mkdir(parents=True)
    (tmp_path / "lib/modules/r/build").symlink_to("/usr/src/gone")
    (tmp_path / "loop").symlink_to("/loop")
    paths = HostPaths(str(tmp_path))
    assert paths.resolve("/lib/modules/r/build") is None
    assert paths.resolve("/loop") is None
    assert not linux.headers_installed(paths, "r")


def test_relative_links_and_dotdot_stay_in_the_root(tmp_path):
    write(tmp_path, "usr/src/linux-headers-4.19.0-26-amd64/Makefile")
    (tmp_path / "lib/modules/4.19.0-26-amd64").mkdir(parents=True)
    (tmp_path / "lib/modules/4.19.0-26-amd64/build").symlink_to(
        "../../../../../../usr/src/linux-headers-4.19.0-26-amd64")
    paths = HostPaths(str(tmp_path))
    assert linux.headers_installed(paths, "4.19.0-26-amd64")


def test_proc_and_sys_default_under_the_root_and_can_move(tmp_path):
    paths = HostPaths(str(tmp_path))
    assert paths.proc("modules") == str(tmp_path / "proc/modules")
    moved = HostPaths(str(tmp_path), procfs="/proc", sysfs="/sys")
    assert moved.proc("modules") == "/proc/modules"
    assert moved.sys("kernel") == "/sys/kernel"


# -- kernel --------------------------------------------------------------------------------

MODULES = """\
ampfsm 61440 2 - Live 0xffffffffc0a1b000 (OE)
redirfs 69632 1 ampfsm, Live 0xffffffffc09f0000 (OE)
xfs 1503232 2 - Live 0xffffffffc0800000
"""


def test_proc_modules():
    assert linux.parse_modules(MODULES) == {"ampfsm": "Live", "redirfs": "Live", "xfs": "Live"}
    with pytest.raises(ValueError):
        linux.parse_modules("not modules at all\n")


@pytest.mark.parametrize("release,expected", [
    ("5.14.0-362.8.1.el9_3.x86_64", (5, 14)), ("3.10.0-1160.el7.x86_64", (3, 10)),
    ("4.19.0-26-amd64\n", (4, 19))])
def test_kernel_release(release, expected):
    assert linux.parse_release(release) == expected


def test_secure_boot_efivar(tmp_path):
    paths = HostPaths(str(tmp_path))
    assert linux.secure_boot(paths) is None  # BIOS boot
    var = f"sys/firmware/efi/efivars/{linux.SECURE_BOOT_VAR}"
    (tmp_path / "sys/firmware/efi/efivars").mkdir(parents=True)
    assert linux.secure_boot(paths) is False  # UEFI without the variable
    write(tmp_path, var, b"\x06\x00\x00\x00\x01")
    assert linux.secure_boot(paths) is True
    write(tmp_path, var, b"\x06\x00\x00\x00\x00")
    assert linux.secure_boot(paths) is False
    write(tmp_path, var, b"\x06\x00")
    with pytest.raises(ValueError):
        linux.secure_boot(paths)


def test_meminfo():
    values = linux.parse_meminfo(
        "MemTotal: 8000 kB\nMemAvailable:  184320 kB\nHugePages_Total: 0\n")
    assert values["MemAvailable"] == 184320 * 1024 and values["HugePages_Total"] == 0
    with pytest.raises(ValueError):
        linux.parse_meminfo("garbage")


# -- accounts ------------------------------------------------------------------------------

def test_passwd_group_and_login_defs(tmp_path):
    write(tmp_path, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n# comment\n+::::::\n"
          "cisco-amp-scan-svc:x:985:985::/opt/cisco/amp:/sbin/nologin\n")
    write(tmp_path, "etc/group", "root:x:0:\n")
    write(tmp_path, "etc/login.defs", "# USERGROUPS_ENAB yes\nUSERGROUPS_ENAB   no\n")
    paths = HostPaths(str(tmp_path))
    assert "cisco-amp-scan-svc" in accounts.users(paths)
    assert "cisco-amp-scan-svc" not in accounts.groups(paths)
    assert accounts.usergroups_enabled(paths) is False
    os.unlink(tmp_path / "etc/login.defs")
    assert accounts.usergroups_enabled(paths) is None
    with pytest.raises(ValueError):
        accounts.parse_colon_file("no colons here\n")


# -- SELinux -------------------------------------------------------------------------------

def test_selinux_state_and_stores(tmp_path):
    paths = HostPaths(str(tmp_path))
    assert selinux.state(paths) is None
    write(tmp_path, "etc/selinux/config", "SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    write(tmp_path, "sys/fs/selinux/enforce", "0")
    assert selinux.state(paths).enforcing is False  # the live kernel wins over the config
    write(tmp_path, "sys/fs/selinux/enforce", "1")
    assert selinux.state(paths).enforcing is True
    assert selinux.module_state(paths, "targeted", "cisco-secure-bpf") == "missing"
    # RHEL 7 store
    write(tmp_path, "etc/selinux/targeted/active/modules/400/cisco-secure-bpf/cil", "x")
    assert selinux.module_state(paths, "targeted", "cisco-secure-bpf") == "installed"
    # RHEL 8+ store, disabled
    write(tmp_path, "var/lib/selinux/targeted/active/modules/400/cisco-secure-bpf/cil", "x")
    write(tmp_path, "var/lib/selinux/targeted/active/modules/disabled/cisco-secure-bpf", "")
    assert selinux.module_state(paths, "targeted", "cisco-secure-bpf") == "disabled"


# -- connector files -----------------------------------------------------------------------

GLOBAL_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<config>\n  <agent>\n'
              "    <version>{}</version>\n  </agent>\n</config>\n")  # as the example hosts


def test_version_from_global_xml_agent_version():
    assert connector_files.parse_version(GLOBAL_XML.format("1.26.0.1182")) == "1.26.0.1182"
    assert connector_files.parse_version(GLOBAL_XML.format(" 1.24.2 ")) == "1.24.2"
    assert connector_files.parse_version(  # namespaces ignored
        "<a:config xmlns:a='urn:x'><a:agent><a:version>1.25.0</a:version></a:agent>"
        "</a:config>") == "1.25.0"
    assert connector_files.parse_version(  # agent/version, after other elements
        "<config><clamav><engine_version>0.103.8</engine_version></clamav>"
        "<agent><uuid>u</uuid><version>1.26.0.1182</version></agent></config>") == "1.26.0.1182"
    assert connector_files.version_tuple("1.25.0.1") == (1, 25, 0)


@pytest.mark.parametrize("text", [
    # only an engine's or definitions' version
    "<config><clamav><version>0.103.8</version></clamav></config>",
    "<config><agent><engine_version>0.103.8</engine_version></agent></config>",
    "<config><agent><clamav><version>0.103.8</version></clamav></agent></config>",
    # a schema version
    "<config><schema_version>1.0.2</schema_version><agent><uuid>u</uuid></agent></config>",
    "<config><agent><schema_version>1.2.3</schema_version></agent></config>",
    # a version attribute
    '<config><agent version="1.26.0.1182"/></config>',
    '<config><agent><version value="1.26.0.1182"/></agent></config>',
    # a version element elsewhere
    "<config><version>1.26.0.1182</version><agent/></config>",
    "<config><updater><version>1.26.0.1182</version></updater></config>",
    "<version>1.26.0.1182</version>",
    # not a connector version (case matters: the element is `version`)
    GLOBAL_XML.format("1.26"), GLOBAL_XML.format("1.26.x"), GLOBAL_XML.format("v1.26.0"),
    GLOBAL_XML.format("1.26.0 build 12"), GLOBAL_XML.format(""), GLOBAL_XML.format("1." * 9 + "1"),
    GLOBAL_XML.format("1" * 5000 + ".0.0"),
    "<config><Agent><Version>1.26.0</Version></Agent></config>",
    # a malformed file: no fallback scan of its text
    "<config><agent><version>1.26.0.1182</version></agent>",
    "not xml but 1.22.0 inside",
    GLOBAL_XML.format("1.26.0.1182").replace("</config>", "</config><trailing/>"),
    "", "<c/>",
])
def test_version_is_unknown_unless_agent_version_holds_one(text):
    assert connector_files.parse_version(text) is None


def test_connector_version_reads_global_xml(tmp_path):
    paths = HostPaths(str(tmp_path))
    assert connector_files.connector_version(paths) is None  # no file: unknown
    write(tmp_path, connector_files.GLOBAL_XML,
          "<config><clamav><version>0.103.8</version></clamav></config>")
    assert connector_files.connector_version(paths) is None
    write(tmp_path, connector_files.GLOBAL_XML, GLOBAL_XML.format("1.26.0.1182"))
    assert connector_files.connector_version(paths) == "1.26.0.1182"


POLICY = """<ns0:Signature xmlns:ns0="http://www.w3.org/2000/09/xmldsig#"><ns0:Object>
<ns0:config><ns0:janus><ns0:policy><ns0:name>Linux Protect</ns0:name>
<ns0:serial_number>42</ns0:serial_number></ns0:policy></ns0:janus>
<ns0:agent><ns0:driver><ns0:protmode><ns0:file>0</ns0:file></ns0:protmode></ns0:driver>
<ns0:nfm><ns0:enable>1</ns0:enable></ns0:nfm></ns0:agent></ns0:config></ns0:Object>
</ns0:Signature>"""


def test_policy_features_namespace_agnostic():
    features = connector_files.parse_policy(POLICY)
    assert features == {"file_copy_move_monitoring": False, "device_flow_correlation": True,
                        "behavioral_protection": None}
    assert connector_files.policy_name(POLICY) == ("Linux Protect", "42")


def cvd_header(version="26300", sigs="2000000"):
    text = f"ClamAV-VDB:16 Sep 2021 08-32 -0400:{version}:{sigs}:90:{'a' * 32}:sig:cisco:1631795520"
    return text.encode().ljust(512, b" ")


def test_cvd_headers():
    good = cvd_header()
    assert connector_files.check_cvd_header(good, 4096) is None
    assert connector_files.parse_cvd_header(good) == {"version": 26300.0, "built": 1631795520.0}
    assert connector_files.check_cvd_header(good[:300], 300) == "truncated"
    assert connector_files.check_cvd_header(good, 512) == "truncated"
    assert connector_files.check_cvd_header(b"\x1f\x8b" + b"\x00" * 600, 602) == "bad_header"
    assert connector_files.check_cvd_header(cvd_header(version="x"), 4096) == "bad_header"
