"""Client public keys: the registered JWKS, or the client's ``jwks_uri`` fetched and cached.

Public keys are immutable data, so each worker caches them in memory. An unknown
``kid`` triggers at most one re-fetch a minute per URI, so a hostile assertion
cannot turn idp into a request amplifier against the client's key server.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from idp.admin.clients import validate_client_jwks
from idp.errors import IdpError
from idp.models import Client

FETCH_TIMEOUT = (2.0, 3.0)  # connect, read
MAX_JWKS_BYTES = 64 * 1024
REFETCH_INTERVAL = 60.0
CACHE_TTL = 600.0


class ClientKeyError(Exception):
    """The client's keys cannot be had or hold no key for the assertion."""

    def __init__(self, rule: str, description: str) -> None:
        super().__init__(description)
        self.rule = rule
        self.description = description


@dataclass
class _CachedJwks:
    keys: KeySet
    fetched_at: float


def check_public_host(uri: str) -> None:
    """Refuse key servers on loopback, private, link-local or reserved addresses (SSRF).

    Development and tests opt out with IDP_INSECURE_JWKS_URI=true. The name is resolved
    here and again by the HTTP client, so this narrows but cannot close DNS rebinding.
    """
    host = urlsplit(uri).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise ClientKeyError("jwks_uri_fetch", "jwks_uri host does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise ClientKeyError("jwks_uri_private", "jwks_uri points to a non-public address")


def fetch_jwks(uri: str, allow_private: bool = False) -> KeySet:
    if not allow_private:
        check_public_host(uri)
    try:
        with requests.get(
            uri,
            timeout=FETCH_TIMEOUT,
            stream=True,
            allow_redirects=False,
            headers={"Accept": "application/jwk-set+json, application/json"},
        ) as response:
            if response.status_code != 200:
                raise ClientKeyError("jwks_uri_fetch", f"jwks_uri answered {response.status_code}")
            body = _read_limited(response)
    except requests.RequestException as exc:
        reason = f"jwks_uri fetch failed ({type(exc).__name__})"
        raise ClientKeyError("jwks_uri_fetch", reason) from None
    try:
        return KeySet.import_key_set(validate_client_jwks(json.loads(body)))
    except (ValueError, IdpError, JoseError) as exc:
        reason = f"jwks_uri returned no usable JWKS: {exc}"
        raise ClientKeyError("jwks_uri_invalid", reason) from None


def _read_limited(response: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(8192):
        size += len(chunk)
        if size > MAX_JWKS_BYTES:
            raise ClientKeyError("jwks_uri_fetch", f"jwks_uri body exceeds {MAX_JWKS_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class ClientKeyResolver:
    def __init__(self, allow_private_hosts: bool = False) -> None:
        self.allow_private_hosts = allow_private_hosts
        self._lock = threading.Lock()
        self._remote: dict[str, _CachedJwks] = {}

    def key_for(self, client: Client, header: dict[str, Any]) -> Key:
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ClientKeyError("kid", "assertion 'kid' header must be a string")
        if client.jwks_uri:
            return self._remote_key(client.jwks_uri, kid)
        if not client.jwks:
            raise ClientKeyError("no_client_keys", "client has no registered keys")
        return _select(KeySet.import_key_set(client.jwks), kid)

    def _remote_key(self, uri: str, kid: str | None) -> Key:
        now = time.monotonic()
        cached = self._remote.get(uri)
        if cached is None or now - cached.fetched_at > CACHE_TTL:
            cached = self._refresh(uri, now, cached)
        try:
            return _select(cached.keys, kid)
        except ClientKeyError:
            if kid is None or now - cached.fetched_at < REFETCH_INTERVAL:
                raise
        return _select(self._refresh(uri, now, cached).keys, kid)

    def _refresh(self, uri: str, now: float, stale: _CachedJwks | None) -> _CachedJwks:
        with self._lock:
            current = self._remote.get(uri)
            if current is not stale and current is not None:
                return current  # another thread refreshed meanwhile
            try:
                fresh = _CachedJwks(fetch_jwks(uri, self.allow_private_hosts), now)
            except ClientKeyError:
                if stale is None:
                    raise
                # Keep the last good keys, and wait a full interval before asking again.
                fresh = _CachedJwks(stale.keys, now)
            self._remote[uri] = fresh
            return fresh


def _select(keys: KeySet, kid: str | None) -> Key:
    if kid is not None:
        for key in keys.keys:
            if key.kid == kid:
                return key
        raise ClientKeyError("unknown_kid", f"client has no key with kid {kid!r}")
    if len(keys.keys) == 1:
        return keys.keys[0]
    raise ClientKeyError("kid_required", "client has several keys; the assertion must name a kid")
