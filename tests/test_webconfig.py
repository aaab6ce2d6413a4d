"""The exporter-toolkit web config: parsing, validation errors naming the field, the bcrypt
check and its cache (units; the running server is tested in test_tls_auth.py)."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest
from conftest import run_exporter

from amp_exporter.webconfig import BasicAuth, TLSContexts, WebConfigError, load, parse

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=10)).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return d


def error(text: str, base: str = ".") -> str:
    with pytest.raises(WebConfigError) as info:
        parse(text, base)
    return str(info.value)


def test_empty_file_means_plain_http_without_auth():
    for text in ("", "{}\n", "tls_server_config:\nbasic_auth_users:\n"):
        config = parse(text)
        assert config.tls is None and config.users == {} and config.headers == ()


def test_full_config_is_parsed_with_paths_relative_to_the_file():
    config = parse(f"""
tls_server_config:
  cert_file: tls/cert.pem
  key_file: /abs/key.pem
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans: [prometheus.example]
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    x-content-type-options: nosniff
    Strict-Transport-Security: max-age=31536000
basic_auth_users:
  prometheus: '{HASH}'
""", "/etc/amp-exporter")
    tls = config.tls
    assert tls.cert_file == "/etc/amp-exporter/tls/cert.pem" and tls.key_file == "/abs/key.pem"
    assert tls.client_ca_file == "/etc/amp-exporter/ca.pem"
    assert tls.client_allowed_sans == ("prometheus.example",)
    assert (tls.min_version, tls.max_version) == ("TLS13", "TLS13")
    assert tls.prefer_server_cipher_suites is False
    assert config.headers == (("X-Content-Type-Options", "nosniff"),
                              ("Strict-Transport-Security", "max-age=31536000"))
    assert config.users == {"prometheus": HASH} and config.warnings == ()


@pytest.mark.parametrize("text, names", [
    ("listen: x\n", "listen: unknown field"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  ciphers: [x]\n",
     "tls_server_config.ciphers: unknown field"),
    ("http_server_config:\n  gzip: true\n", "http_server_config.gzip: unknown field"),
    ("tls_server_config:\n  cert_file: a\n", "tls_server_config.key_file: required"),
    ("tls_server_config:\n  key_file: a\n", "tls_server_config.cert_file: required"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n",
     "tls_server_config.client_auth_type: 'Maybe' is not one of"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n"
     "  client_auth_type: RequireAnyClientCert\n",
     "tls_server_config.client_auth_type: RequireAnyClientCert"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
     "tls_server_config.client_auth_type: RequestClientCert"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n"
     "  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_ca_file: required"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
     "tls_server_config.client_ca_file: set without"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
     "tls_server_config.client_allowed_sans: needs"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n",
     "tls_server_config.min_version: TLS11 is not supported"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: SSL3\n",
     "tls_server_config.max_version: 'SSL3'"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n"
     "  max_version: TLS12\n", "tls_server_config.min_version: above max_version"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [RC4]\n",
     "tls_server_config.cipher_suites: unknown or unsupported suite 'RC4'"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [X25519]\n",
     "tls_server_config.curve_preferences: not supported"),
    ("tls_server_config:\n  cert: PEM\n", "tls_server_config.cert: inline certificates"),
    ("rate_limit:\n  interval: 1s\n", "rate_limit: not supported"),
    ("tls_server_config: [a]\n", "tls_server_config: expected a mapping"),
    ("tls_server_config:\n  cert_file: 3\n  key_file: b\n",
     "tls_server_config.cert_file: expected a non-empty string"),
    ("http_server_config:\n  http2: maybe\n", "http_server_config.http2: expected true or false"),
    ("http_server_config:\n  headers:\n    Server: x\n",
     "http_server_config.headers.Server: not a header that can be set"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
     "http_server_config.headers.X-Frame-Options: 'allow' is not one of"),
    ("basic_auth_users:\n  alice: plain-text-password\n", "basic_auth_users.alice: not a bcrypt"),
    ("basic_auth_users:\n  'a:b': '" + HASH + "'\n", "basic_auth_users.a:b: a user name"),
    ("basic_auth_users: [alice]\n", "basic_auth_users: expected a mapping"),
    ("tls_server_config: {cert_file: a\n", "not valid YAML"),
    ("- a\n", "top level: expected a mapping"),
])
def test_errors_name_the_field(text, names):
    assert names in error(text)


def test_http2_is_accepted_with_a_warning():
    config = parse("http_server_config:\n  http2: true\n")
    assert config.warnings and "http2: ignored" in config.warnings[0]
    assert parse("http_server_config:\n  http2: false\n").warnings == ()


def test_load_reads_the_certificates_at_once(tmp_path, certs):
    good = tmp_path / "web.yml"
    good.write_text(f"tls_server_config:\n  cert_file: {certs}/cert.pem\n"
                    f"  key_file: {certs}/key.pem\n")
    assert isinstance(load(str(good)).tls.context(), ssl.SSLContext)
    swapped = tmp_path / "swapped.yml"
    swapped.write_text(f"tls_server_config:\n  cert_file: {certs}/key.pem\n"
                       f"  key_file: {certs}/cert.pem\n")
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file/key_file"):
        load(str(swapped))
    missing = tmp_path / "missing.yml"
    missing.write_text("tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n")
    with pytest.raises(WebConfigError, match="no such file"):
        load(str(missing))
    with pytest.raises(WebConfigError, match="cannot read"):
        load(str(tmp_path / "absent.yml"))
    os.mkfifo(tmp_path / "fifo.yml")  # open() of it would wait for a writer forever
    with pytest.raises(WebConfigError, match="cannot read: not a regular file"):
        load(str(tmp_path / "fifo.yml"))
    (tmp_path / "latin1.yml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(WebConfigError, match="cannot read"):
        load(str(tmp_path / "latin1.yml"))


def test_tls_context_follows_renewed_files(tmp_path, certs):
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_bytes((certs / name).read_bytes())
    config = parse("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n",
                   str(tmp_path))
    errors = []
    contexts = TLSContexts(config.tls, errors.append)
    first = contexts.get()
    assert contexts.get() is first  # unchanged files: the same context
    (tmp_path / "cert.pem").write_text("garbage\n")
    assert contexts.get() is first and len(errors) == 1  # a bad renewal keeps the old one
    assert contexts.get() is first and len(errors) == 1  # ... and is reported once
    (tmp_path / "cert.pem").write_bytes((certs / "cert.pem").read_bytes() + b"\n")
    assert contexts.get() is not first


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_checks_and_caches_only_successes():
    auth = BasicAuth({"alice": HASH})
    assert auth.allows(header("alice", "secret"))
    assert auth.bcrypt_checks == 1
    assert auth.allows(header("alice", "secret"))
    assert auth.bcrypt_checks == 1  # cached
    assert not auth.allows(header("alice", "wrong"))
    assert not auth.allows(header("alice", "wrong"))
    assert auth.bcrypt_checks == 3  # failures are never cached
    assert not auth.allows(header("bob", "secret"))
    no_colon = "Basic " + base64.b64encode(b"nocolon").decode()
    for bad in (None, "", "Bearer x", "Basic !!!", no_colon):
        assert not auth.allows(bad)
    assert all(len(k) == 32 for k in auth._cache)  # digests only, never a password


def test_cache_is_bounded_and_forgets_a_changed_hash():
    users = {f"u{i}": bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode() for i in range(5)}
    auth = BasicAuth(users, cache_size=3)
    for user in users:
        assert auth.check(user, "pw")
    assert len(auth._cache) == 3
    auth.users["u4"] = bcrypt.hashpw(b"new", bcrypt.gensalt(rounds=4)).decode()
    assert not auth.check("u4", "pw")
    assert auth.check("u4", "new")


def test_unknown_user_costs_a_bcrypt_check_too():
    auth = BasicAuth({"alice": HASH})

    def timed(user: str) -> float:
        start = time.perf_counter()
        for _ in range(3):
            assert not auth.check(user, "wrong")
        return (time.perf_counter() - start) / 3

    known, unknown = timed("alice"), timed("mallory")
    # Same bcrypt cost either way: within a factor of two, both well above a dict lookup.
    assert unknown > 0.01 and known > 0.01
    assert 0.5 < unknown / known < 2.0


def test_bad_config_file_exits_2_naming_the_field(tmp_path, hosts):
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: a\n  key_file: b\n  bogus: 1\n")
    result = run_exporter("serve", "--path.rootfs", str(hosts["no-connector"]),
                          "--web.listen-address", "127.0.0.1:0",
                          "--web.config.file", str(config), timeout=30)
    assert result.returncode == 2
    assert "tls_server_config.bogus: unknown field" in result.stderr
    assert str(config) in result.stderr
