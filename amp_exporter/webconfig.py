"""`--web.config.file`: the exporter-toolkit web configuration (the file node_exporter takes).

    tls_server_config:      # TLS (absent: plain HTTP)
      cert_file, key_file               required together; relative to the config file
      client_auth_type                  NoClientCert (default), VerifyClientCertIfGiven,
                                        RequireAndVerifyClientCert
      client_ca_file                    needed by the two Verify types
      client_allowed_sans               client certificate must carry one of these SANs
      min_version, max_version          TLS12 (default min) or TLS13 (default max)
      cipher_suites                     Go names of TLS 1.2 suites (TLS 1.3's are fixed)
      prefer_server_cipher_suites       bool
    http_server_config:
      headers                           extra response headers (the five the toolkit allows)
      http2                             accepted and ignored: amp-exporter speaks HTTP/1.x
    basic_auth_users:                   {user: bcrypt hash}

Everything is checked when the exporter starts: an unknown field, a field of the wrong type,
an unreadable certificate or a malformed hash is a `WebConfigError` naming the field, and
`serve` exits 2 with it. Fields the toolkit has but that Python's `ssl` module cannot honour
(RequestClientCert and RequireAnyClientCert, which accept unverified certificates;
curve_preferences; inline cert/key/client_ca; rate_limit; TLS10/TLS11) are refused by name
rather than silently weakened.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from amp_exporter.host.paths import open_host_file


class WebConfigError(ValueError):
    """A web config file that cannot be used; the message names the field."""


TOP_LEVEL = {"tls_server_config", "http_server_config", "basic_auth_users"}
TLS_FIELDS = {"cert_file", "key_file", "client_auth_type", "client_ca_file",
              "client_allowed_sans", "min_version", "max_version", "cipher_suites",
              "prefer_server_cipher_suites"}
HTTP_FIELDS = {"headers", "http2"}
# Exporter-toolkit fields this implementation refuses, with why.
UNSUPPORTED = {
    "rate_limit": "not supported by amp-exporter",
    "tls_server_config.cert": "inline certificates are not supported: use cert_file",
    "tls_server_config.key": "inline keys are not supported: use key_file",
    "tls_server_config.client_ca": "inline CAs are not supported: use client_ca_file",
    "tls_server_config.curve_preferences":
        "not supported by Python's ssl module: OpenSSL's default curves are used",
}

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
CLIENT_AUTH_UNSUPPORTED = ("RequestClientCert", "RequireAnyClientCert")
VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's crypto/tls names (what exporter-toolkit files use) -> OpenSSL names. TLS 1.2 only:
# as in Go, the TLS 1.3 suites are not configurable.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}
# The response headers exporter-toolkit allows, and the values it allows for two of them.
HEADERS = {"Strict-Transport-Security": None, "X-Content-Type-Options": {"nosniff"},
           "X-Frame-Options": {"deny", "sameorigin"}, "X-XSS-Protection": None,
           "Content-Security-Policy": None}
BCRYPT_HASH = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")


@dataclass(frozen=True)
class TLSConfig:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: Optional[str] = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)

    def context(self) -> ssl.SSLContext:
        """A server context; WebConfigError naming the field when a file does not load."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = VERSIONS[self.min_version]
        ctx.maximum_version = VERSIONS[self.max_version]
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"tls_server_config.cert_file/key_file "
                                 f"({self.cert_file}, {self.key_file}): {_reason(exc)}") from exc
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise WebConfigError(f"tls_server_config.client_ca_file "
                                     f"({self.client_ca_file}): {_reason(exc)}") from exc
        if self.cipher_suites:
            try:
                ctx.set_ciphers(":".join(CIPHER_SUITES[c] for c in self.cipher_suites))
            except ssl.SSLError as exc:
                raise WebConfigError(f"tls_server_config.cipher_suites: {_reason(exc)}") from exc
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def allowed(self, peer_cert: Optional[dict]) -> bool:
        """client_allowed_sans: does the verified client certificate carry one of them?"""
        if not self.client_allowed_sans:
            return True
        sans = {value for _kind, value in (peer_cert or {}).get("subjectAltName", ())}
        return bool(sans & set(self.client_allowed_sans))


@dataclass(frozen=True)
class WebConfig:
    tls: Optional[TLSConfig] = None
    headers: tuple[tuple[str, str], ...] = ()
    users: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise WebConfigError(f"{where}: field names must be strings, got {key!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{where}: expected a non-empty string")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WebConfigError(f"{where}: expected a list of strings")
    return tuple(_string(v, f"{where}[{i}]") for i, v in enumerate(value))


def _known(section: dict, allowed: set, prefix: str) -> None:
    for key in section:
        name = f"{prefix}{key}"
        if name in UNSUPPORTED:
            raise WebConfigError(f"{name}: {UNSUPPORTED[name]}")
        if key not in allowed:
            raise WebConfigError(f"{name}: unknown field (allowed: {', '.join(sorted(allowed))})")


def _tls(section: dict, base: str) -> Optional[TLSConfig]:
    _known(section, TLS_FIELDS, "tls_server_config.")
    if not section:
        return None

    def path(key: str) -> Optional[str]:
        if section.get(key) is None:
            return None
        return os.path.join(base, _string(section[key], f"tls_server_config.{key}"))

    cert, key = path("cert_file"), path("key_file")
    if not cert or not key:
        missing = "cert_file" if not cert else "key_file"
        raise WebConfigError(f"tls_server_config.{missing}: required when tls_server_config "
                             "is set (cert_file and key_file go together)")
    auth = section.get("client_auth_type") or "NoClientCert"
    if auth in CLIENT_AUTH_UNSUPPORTED:
        raise WebConfigError(f"tls_server_config.client_auth_type: {auth} (a client certificate "
                             "accepted without verification) is not supported: use "
                             "VerifyClientCertIfGiven or RequireAndVerifyClientCert with "
                             "client_ca_file")
    if not isinstance(auth, str) or auth not in CLIENT_AUTH:  # a list is not hashable
        raise WebConfigError(f"tls_server_config.client_auth_type: {auth!r} is not one of "
                             f"{', '.join(CLIENT_AUTH)}")
    ca = path("client_ca_file")
    if auth != "NoClientCert" and not ca:
        raise WebConfigError(f"tls_server_config.client_ca_file: required with "
                             f"client_auth_type {auth}")
    if auth == "NoClientCert" and ca:
        raise WebConfigError("tls_server_config.client_ca_file: set without a client_auth_type "
                             "that verifies client certificates")
    sans = _strings(section.get("client_allowed_sans"), "tls_server_config.client_allowed_sans")
    if sans and auth != "RequireAndVerifyClientCert":
        raise WebConfigError("tls_server_config.client_allowed_sans: needs client_auth_type "
                             "RequireAndVerifyClientCert")
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = section.get(name) or default
        if value in ("TLS10", "TLS11"):
            raise WebConfigError(f"tls_server_config.{name}: {value} is not supported "
                                 "(TLS12 or TLS13)")
        if not isinstance(value, str) or value not in VERSIONS:  # a list is not hashable
            raise WebConfigError(f"tls_server_config.{name}: {value!r} is not TLS12 or TLS13")
        versions[name] = value
    if VERSIONS[versions["min_version"]] > VERSIONS[versions["max_version"]]:
        raise WebConfigError("tls_server_config.min_version: above max_version")
    suites = _strings(section.get("cipher_suites"), "tls_server_config.cipher_suites")
    for suite in suites:
        if suite not in CIPHER_SUITES:
            raise WebConfigError(f"tls_server_config.cipher_suites: unknown or unsupported "
                                 f"suite {suite!r} (TLS 1.2 suites by their Go names, e.g. "
                                 "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError("tls_server_config.prefer_server_cipher_suites: expected true "
                             "or false")
    return TLSConfig(cert_file=cert, key_file=key, client_auth_type=auth, client_ca_file=ca,
                     client_allowed_sans=sans, min_version=versions["min_version"],
                     max_version=versions["max_version"], cipher_suites=suites,
                     prefer_server_cipher_suites=prefer)


def _http(section: dict) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    _known(section, HTTP_FIELDS, "http_server_config.")
    warnings = []
    if "http2" in section:
        if not isinstance(section["http2"], bool):
            raise WebConfigError("http_server_config.http2: expected true or false")
        if section["http2"]:
            warnings.append("http_server_config.http2: ignored, amp-exporter serves HTTP/1.1 "
                            "only (Prometheus scrapes it as well)")
    headers = []
    for name, value in _mapping(section.get("headers"), "http_server_config.headers").items():
        allowed = {h.lower(): h for h in HEADERS}
        if name.lower() not in allowed:
            raise WebConfigError(f"http_server_config.headers.{name}: not a header that can be "
                                 f"set (allowed: {', '.join(HEADERS)})")
        canonical = allowed[name.lower()]
        value = _string(value, f"http_server_config.headers.{name}")
        if "\r" in value or "\n" in value:
            raise WebConfigError(f"http_server_config.headers.{name}: line breaks in a value")
        choices = HEADERS[canonical]
        if choices is not None and value.lower() not in choices:
            raise WebConfigError(f"http_server_config.headers.{name}: {value!r} is not one of "
                                 f"{', '.join(sorted(choices))}")
        headers.append((canonical, value))
    return tuple(headers), tuple(warnings)


def _users(section: dict) -> dict[str, str]:
    users = {}
    for user, hashed in section.items():
        if not user or ":" in user:
            raise WebConfigError(f"basic_auth_users.{user}: a user name must be non-empty and "
                                 "without ':'")
        if not isinstance(hashed, str) or not BCRYPT_HASH.match(hashed):
            raise WebConfigError(f"basic_auth_users.{user}: not a bcrypt hash ($2a$/$2b$/$2y$, "
                                 "60 characters, e.g. from `htpasswd -nBC 10 USER`)")
        users[user] = hashed
    return users


def parse(text: str, base_dir: str = ".") -> WebConfig:
    """Parse and validate a web config; relative file names are read from base_dir."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"not valid YAML: {exc}".replace("\n", " ")) from exc
    except RecursionError as exc:  # PyYAML's composer recurses per nesting level
        raise WebConfigError("not valid YAML: nested too deeply") from exc
    except Exception as exc:  # PyYAML's constructors let their own errors out: ValueError
        # (`2001-13-45`, `!!int x`), IndexError (`!!int`), AttributeError (`!!timestamp x`)
        raise WebConfigError(f"not valid YAML: {type(exc).__name__}: {exc}".replace(
            "\n", " ")) from exc
    data = _mapping(data, "top level")
    for key in data:
        if key in UNSUPPORTED:
            raise WebConfigError(f"{key}: {UNSUPPORTED[key]}")
        if key not in TOP_LEVEL:
            raise WebConfigError(f"{key}: unknown field (allowed: {', '.join(sorted(TOP_LEVEL))})")
    tls = _tls(_mapping(data.get("tls_server_config"), "tls_server_config"), base_dir)
    headers, warnings = _http(_mapping(data.get("http_server_config"), "http_server_config"))
    users = _users(_mapping(data.get("basic_auth_users"), "basic_auth_users"))
    return WebConfig(tls=tls, headers=headers, users=users, warnings=warnings)


def load(path: str) -> WebConfig:
    """Read, parse and validate the file, and load its certificates once (to fail early)."""
    try:
        with open_host_file(path) as handle:  # a FIFO would hang the start-up
            text = handle.read(1 << 20).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"cannot read: {_reason(exc)}") from exc
    config = parse(text, os.path.dirname(os.path.abspath(path)))
    if config.tls:
        config.tls.context()
    return config


class TLSContexts:
    """The server's SSLContext, rebuilt when the certificate, key or CA file changes (so a
    renewed certificate is served without a restart). A change that does not load keeps the
    previous context and is reported once through `on_error`."""

    def __init__(self, tls: TLSConfig, on_error=None) -> None:
        self.tls = tls
        self.on_error = on_error
        self._lock = threading.Lock()
        self._stamp = self._files_stamp()
        self._context = tls.context()
        self._failed_stamp = None

    def _files_stamp(self) -> tuple:
        stamp = []
        for name in self.tls.files():
            try:
                st = os.stat(name)
                stamp.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stamp.append(None)
        return tuple(stamp)

    def get(self) -> ssl.SSLContext:
        stamp = self._files_stamp()
        with self._lock:
            if stamp != self._stamp and stamp != self._failed_stamp:
                try:
                    self._context = self.tls.context()
                    self._stamp, self._failed_stamp = stamp, None
                except WebConfigError as exc:
                    self._failed_stamp = stamp
                    if self.on_error:
                        self.on_error(exc)
            return self._context


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes.

    bcrypt is slow by design (tens of milliseconds at cost 10), so successful checks are
    remembered: the cache holds only SHA-256 digests of (user, password, hash) — never a
    password — is bounded (LRU), and a changed hash no longer matches its entries. A user
    who does not exist is checked against a dummy hash of the same cost, so the time of a
    failed login does not tell whether the user name exists.
    """

    def __init__(self, users: dict[str, str], cache_size: int = 1024) -> None:
        import bcrypt  # lazily: only servers with basic_auth_users need it

        self._bcrypt = bcrypt
        self.users = dict(users)
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        cost = max((int(BCRYPT_HASH.match(h).group(1)) for h in users.values()), default=10)
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        self.bcrypt_checks = 0

    def __bool__(self) -> bool:
        return bool(self.users)

    @staticmethod
    def credentials(header: Optional[str]) -> Optional[tuple[str, str]]:
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and a non-ASCII token
            return None
        user, sep, password = decoded.partition(":")
        return (user, password) if sep else None

    def check(self, user: str, password: str) -> bool:
        hashed = self.users.get(user)
        key = hashlib.sha256(b"\0".join(
            s.encode("utf-8", "surrogateescape") for s in (user, password, hashed or ""))).digest()
        if hashed is not None:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return True
        self.bcrypt_checks += 1
        target = hashed.encode() if hashed is not None else self._dummy
        try:
            ok = self._bcrypt.checkpw(password.encode("utf-8", "surrogateescape"), target)
        except ValueError:
            ok = False
        ok = ok and hashed is not None
        if ok and self.cache_size > 0:
            with self._lock:
                self._cache[key] = None
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return ok

    def allows(self, header: Optional[str]) -> bool:
        creds = self.credentials(header)
        if creds is None:
            return False
        return self.check(*creds)
