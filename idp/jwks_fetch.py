"""Fetching a JWKS over HTTP (RFC 7517 §5), hardened for URLs that others control.

Used for clients' ``jwks_uri`` keys (idp.oauth.client_keys) and by resource servers
verifying idp's tokens (idp.verify.RemoteJwks). It imports only requests,
joserfc and the standard library, so that idp.verify stays importable without
Flask, a database or any other server dependency of idp.

The body is read in a stream up to a size cap, redirects are not followed (a
redirect could lead past the host check below), and optionally the host must
resolve to public addresses only (SSRF).
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

FETCH_TIMEOUT = (2.0, 3.0)  # connect, read (seconds)
MAX_JWKS_BYTES = 64 * 1024
ACCEPT = "application/jwk-set+json, application/json"  # RFC 7517 §8.5.1

# The failed rule, as ClientKeyError and the token-failure metrics name it.
FETCH_FAILED = "jwks_uri_fetch"
PRIVATE_HOST = "jwks_uri_private"
INVALID_JWKS = "jwks_uri_invalid"

_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1

if TYPE_CHECKING:
    import requests


class JwksFetchError(Exception):
    """The JWKS could not be had; ``rule`` says which check failed.

    The description never names the URL, so callers may show it to the URL's owner.
    """

    def __init__(self, rule: str, description: str) -> None:
        super().__init__(description)
        self.rule = rule
        self.description = description


@dataclass(frozen=True)
class FetchedJwks:
    keys: KeySet
    document: dict[str, Any]  # the JSON as served, for callers with rules of their own
    max_age: int | None  # Cache-Control max-age of the response, when it had one


def check_public_host(url: str) -> None:
    """Refuse key servers on loopback, private, link-local or reserved addresses (SSRF).

    The name is resolved here and again by the HTTP client, so this narrows but cannot
    close DNS rebinding.
    """
    host = urlsplit(url).hostname
    if not host:
        raise JwksFetchError(FETCH_FAILED, "jwks_uri has no host")
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise JwksFetchError(FETCH_FAILED, "jwks_uri host does not resolve") from None
    for info in infos:
        if not _is_public(ipaddress.ip_address(info[4][0])):
            raise JwksFetchError(PRIVATE_HOST, "jwks_uri points to a non-public address")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # An IPv6 address can carry an IPv4 one (RFC 4291 §2.5.5.2, RFC 3056 6to4, RFC 6052
    # NAT64) that a gateway would reach, so the embedded address must be public as well.
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not embedded.is_global:
            return False
    return address.is_global


def fetch_jwks(
    url: str,
    *,
    allow_private: bool,
    timeout: float | tuple[float, float] = FETCH_TIMEOUT,
    max_bytes: int = MAX_JWKS_BYTES,
) -> FetchedJwks:
    """GET ``url`` and parse it as a JWKS; JwksFetchError on any failure."""
    # Imported here: requests (with urllib3) is a tenth of a second of start-up that a
    # process which never fetches a key set, such as most idp commands, need not pay.
    import requests

    if not allow_private:
        check_public_host(url)
    try:
        with requests.get(
            url,
            timeout=timeout,
            stream=True,
            allow_redirects=False,
            headers={"Accept": ACCEPT},
        ) as response:
            if response.status_code != 200:
                raise JwksFetchError(FETCH_FAILED, f"jwks_uri answered {response.status_code}")
            body = _read_limited(response, max_bytes)
            cache_control = response.headers.get("Cache-Control", "")
    except requests.RequestException as exc:
        reason = f"jwks_uri fetch failed ({type(exc).__name__})"
        raise JwksFetchError(FETCH_FAILED, reason) from None
    document = _parse(body)
    return FetchedJwks(_import(document), document, max_age(cache_control))


def _read_limited(response: requests.Response, max_bytes: int) -> bytes:
    # Content-Length may be absent or lie, so count what actually arrives.
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(8192):
        size += len(chunk)
        if size > max_bytes:
            raise JwksFetchError(FETCH_FAILED, f"jwks_uri body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:  # also a body that is not UTF-8
        raise JwksFetchError(INVALID_JWKS, "jwks_uri returned no usable JWKS: not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        reason = 'jwks_uri returned no usable JWKS: not a JSON object {"keys": [...]}'
        raise JwksFetchError(INVALID_JWKS, reason)
    return document


def _import(document: dict[str, Any]) -> KeySet:
    try:
        return KeySet.import_key_set(cast(Any, document))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        reason = f"jwks_uri returned no usable JWKS: {exc}"
        raise JwksFetchError(INVALID_JWKS, reason) from None


def max_age(cache_control: str) -> int | None:
    """The ``max-age`` directive of a Cache-Control value (RFC 9111 §5.2.2.1), or None.

    Directive names are case-insensitive and a quoted value is tolerated (RFC 9111 §5.2);
    ``s-maxage`` and malformed values are ignored.
    """
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        value = value.strip().strip('"')
        if name.strip().lower() == "max-age" and value.isascii() and value.isdigit():
            return int(value)
    return None
