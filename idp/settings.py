"""Configuration: environment over the TOML file named by IDP_CONFIG over defaults.

Every value is parsed and checked once, here, so the rest of the code can trust
a typed ``Settings`` object and a bad value stops start-up with one clear line.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from idp.errors import ConfigurationError
from idp.registry import SIGNING_ALGS

AUDIENCE_MODES = ("issuer", "issuer,token_endpoint")
DPOP_NONCE_MODES = ("off", "required")
PROFILES = ("fapi2",)
# RFC 9110 §5.1: a field name is a token.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
KEY_STORES = ("file", "database")
ENV_PREFIX = "IDP_"


@dataclass(frozen=True)
class Settings:
    issuer: str = "http://127.0.0.1:8000"
    database_url: str = "sqlite:///instance/idp.sqlite3"
    redis_url: str | None = None
    keys_dir: str = "keys"
    key_store: str = "file"
    # Never in a repr: settings may end up in a log line or a traceback.
    keys_encryption_key: str | None = dataclass_field(default=None, repr=False)
    signing_alg: str = "ES256"
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 0
    assertion_max_lifetime: int = 300
    assertion_audience: str = "issuer,token_endpoint"
    clock_skew: int = 30
    lockout_threshold: int = 5
    lockout_duration: int = 900
    jwks_max_age: int = 300
    insecure_jwks_uri: bool = False
    max_body: int = 65536
    refresh_reuse_grace: int = 0
    metrics_token: str | None = None
    token_json_bodies: bool = False
    # Seconds a request waits for the database (a connection, a pooled one, an answer)
    # before it is answered 503 (idp.database).
    database_timeout: int = 2
    # Housekeeping (`idp purge`): days audit events are kept (0 = forever), and days a
    # used refresh token of a login without an absolute lifetime is kept so that its
    # reuse is still detected.
    audit_retention_days: int = 365
    refresh_reuse_detection_days: int = 30
    # Sender-constrained tokens (RFC 9449 DPoP, RFC 8705 mutual TLS) and FAPI 2.0.
    dpop_proof_max_age: int = 300
    dpop_nonce: str = "off"
    mtls_cert_header: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    profile: str | None = None

    @property
    def dpop_nonce_required(self) -> bool:
        return self.dpop_nonce == "required"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/oidc/token"

    @property
    def assertion_audiences(self) -> list[str]:
        if self.assertion_audience == "issuer":
            return [self.issuer]
        return [self.issuer, self.token_endpoint]

    def anchored(self, base_dir: Path) -> Settings:
        """Resolve relative paths against ``base_dir`` so every command sees the same files."""
        return replace(
            self,
            keys_dir=str(_anchor(Path(self.keys_dir), base_dir)),
            database_url=_anchor_sqlite_url(self.database_url, base_dir),
        )


def _anchor(path: Path, base_dir: Path) -> Path:
    return path if path.is_absolute() else base_dir / path


def _anchor_sqlite_url(url: str, base_dir: Path) -> str:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == "sqlite:///:memory:":
        return url
    path, _, query = url[len(prefix) :].partition("?")
    if not path or path.startswith("/"):
        return url
    anchored = f"{prefix}{_anchor(Path(path), base_dir)}"
    return f"{anchored}?{query}" if query else anchored


def _parse_int(name: str, raw: Any, minimum: int = 0) -> int:
    if isinstance(raw, bool):
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _parse_bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _parse_choice(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def parse(name: str, raw: Any) -> str:
        value = str(raw).strip().replace(" ", "")
        if value not in choices:
            raise ConfigurationError(f"{name} must be one of {', '.join(choices)}; got {raw!r}")
        return value

    return parse


def _parse_http_url(name: str, raw: Any) -> str:
    value = str(raw).strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"{name} must be an http(s) URL, got {raw!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must not carry a query or fragment, got {raw!r}")
    return value


def _parse_database_url(name: str, raw: Any) -> str:
    value = str(raw).strip()
    scheme = value.partition("://")[0]
    if not scheme or "://" not in value:
        raise ConfigurationError(f"{name} must be a SQLAlchemy URL, got {raw!r}")
    if scheme.split("+")[0] not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"{name} must be a sqlite:// or postgresql:// URL, got {scheme}://"
        )
    return value


def _parse_redis_url(name: str, raw: Any) -> str | None:
    value = str(raw).strip()
    if not value:
        return None
    if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        # The scheme only: the URL may carry a password.
        scheme = urlsplit(value).scheme or "(none)"
        raise ConfigurationError(
            f"{name} must be a redis://, rediss:// or unix:// URL, got {scheme}:"
        )
    return value


def _parse_text(name: str, raw: Any) -> str:
    value = str(raw).strip()
    if not value:
        raise ConfigurationError(f"{name} must not be empty")
    return value


def _parse_optional_secret(name: str, raw: Any) -> str | None:
    value = str(raw).strip()
    if not value:
        return None
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ConfigurationError(f"{name} must be printable ASCII without spaces")
    return value


KEK_BYTES = 32
KEK_FORMAT = (
    "32 random bytes in base64url (43 characters; make one with "
    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def parse_kek(name: str, text: str) -> bytes:
    """The key-encryption key's bytes; an error never repeats the value, only its fault."""
    value = text.strip()
    if not _BASE64URL.fullmatch(value):
        raise ConfigurationError(f"{name} must be {KEK_FORMAT}; it is not base64url")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{name} must be {KEK_FORMAT}; it is not base64url") from None
    if len(raw) != KEK_BYTES:
        raise ConfigurationError(f"{name} must be {KEK_FORMAT}; it decodes to {len(raw)} bytes")
    return raw


def _parse_kek(name: str, raw: Any) -> str | None:
    value = str(raw).strip()
    if not value:
        return None
    parse_kek(name, value)
    return value


def _parse_header_name(name: str, raw: Any) -> str | None:
    value = str(raw).strip()
    if not value:
        return None
    if not _HEADER_NAME.fullmatch(value):
        raise ConfigurationError(f"{name} must be an HTTP header name, got {raw!r}")
    return value


def _parse_networks(name: str, raw: Any) -> tuple[str, ...]:
    """Addresses or CIDRs, each checked and kept in its normal form (``10.0.0.0/8``)."""
    items = raw if isinstance(raw, list) else str(raw).split(",")
    networks = []
    for item in (str(entry).strip() for entry in items):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigurationError(f"{name} must list addresses or CIDRs, got {item!r}") from None
    return tuple(networks)


def _parse_profile(name: str, raw: Any) -> str | None:
    value = str(raw).strip()
    if not value:
        return None
    return _parse_choice(PROFILES)(name, value)


def _check_combination(settings: Settings) -> None:
    if settings.key_store == "database" and settings.keys_encryption_key is None:
        raise ConfigurationError(
            f"IDP_KEY_STORE=database needs IDP_KEYS_ENCRYPTION_KEY: {KEK_FORMAT}"
        )


def _int(minimum: int) -> Callable[[str, Any], int]:
    return lambda name, raw: _parse_int(name, raw, minimum)


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "issuer": _parse_http_url,
    "database_url": _parse_database_url,
    "redis_url": _parse_redis_url,
    "keys_dir": _parse_text,
    "key_store": _parse_choice(KEY_STORES),
    "keys_encryption_key": _parse_kek,
    "signing_alg": _parse_choice(SIGNING_ALGS),
    "access_token_ttl": _int(1),
    "refresh_token_ttl": _int(0),
    "assertion_max_lifetime": _int(1),
    "assertion_audience": _parse_choice(AUDIENCE_MODES),
    "clock_skew": _int(0),
    "lockout_threshold": _int(1),
    "lockout_duration": _int(0),
    "jwks_max_age": _int(0),
    "insecure_jwks_uri": _parse_bool,
    "max_body": _int(1024),
    "refresh_reuse_grace": _int(0),
    "metrics_token": _parse_optional_secret,
    "token_json_bodies": _parse_bool,
    "database_timeout": _int(1),
    "audit_retention_days": _int(0),
    "refresh_reuse_detection_days": _int(1),
    "dpop_proof_max_age": _int(1),
    "dpop_nonce": _parse_choice(DPOP_NONCE_MODES),
    "mtls_cert_header": _parse_header_name,
    "trusted_proxies": _parse_networks,
    "profile": _parse_profile,
}


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(f"IDP_CONFIG file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"IDP_CONFIG file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_PARSERS))
    if unknown:
        raise ConfigurationError(f"IDP_CONFIG file {path} has unknown keys: {', '.join(unknown)}")
    return data


def is_configured(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether setting ``name`` is given by ``environ`` or its IDP_CONFIG file, rather
    than left to the built-in default."""
    env = os.environ if environ is None else environ
    if ENV_PREFIX + name.upper() in env:
        return True
    config_file = env.get("IDP_CONFIG")
    return name in _read_toml(config_file) if config_file else False


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default ``os.environ``) and its IDP_CONFIG file."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    config_file = env.get("IDP_CONFIG")
    if config_file:
        raw.update(_read_toml(config_file))
    for field in fields(Settings):
        env_name = ENV_PREFIX + field.name.upper()
        if env_name in env:
            raw[field.name] = env[env_name]
    values = {name: _PARSERS[name](ENV_PREFIX + name.upper(), value) for name, value in raw.items()}
    settings = Settings(**values)
    _check_combination(settings)
    return settings
