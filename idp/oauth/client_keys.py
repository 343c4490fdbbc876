"""Public keys of assertion signers (clients, and the trusted issuers of the jwt-bearer
grant): the registered JWKS, or the signer's ``jwks_uri`` fetched and cached.

Public keys are immutable data, so each worker caches them in memory. An unknown
``kid`` triggers at most one re-fetch a minute per URI, so a hostile assertion
cannot turn idp into a request amplifier against the client's key server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from joserfc.jwk import GuestProtocol, Key, KeySet

from idp.errors import IdpError
from idp.jwks_fetch import INVALID_JWKS, JwksFetchError, fetch_jwks
from idp.registrations.clients import validate_client_jwks

REFETCH_INTERVAL = 60.0
CACHE_TTL = 600.0
MAX_PARSED_CLIENTS = 10_000


class KeyOwner(Protocol):
    """An immutable registration of a signer's keys; ``id`` names it in the worker's cache."""

    @property
    def id(self) -> str: ...
    @property
    def jwks(self) -> dict[str, Any] | None: ...
    @property
    def jwks_uri(self) -> str | None: ...


class ClientKeyError(Exception):
    """The signer's keys cannot be had or hold no key for the assertion."""

    def __init__(self, rule: str, description: str) -> None:
        super().__init__(description)
        self.rule = rule
        self.description = description


class KeyPicker:
    """Hands joserfc the signer's key named by the assertion header (re-fetching if
    needed); a key that cannot be had becomes the caller's OAuth error."""

    def __init__(
        self,
        owner: KeyOwner,
        resolver: ClientKeyResolver,
        error: Callable[[str, str], Exception],
    ) -> None:
        self.owner = owner
        self.resolver = resolver
        self.error = error

    def __call__(self, obj: GuestProtocol) -> Key:
        try:
            return self.resolver.key_for(self.owner, obj.headers())
        except ClientKeyError as exc:
            raise self.error(exc.rule, exc.description) from None


@dataclass
class _CachedJwks:
    keys: KeySet
    fetched_at: float


def fetch_client_jwks(uri: str, allow_private: bool = False) -> KeySet:
    """The client's keys from its ``jwks_uri``, held to the rules of a registered JWKS.

    Private hosts are refused unless IDP_INSECURE_JWKS_URI=true (development and tests).
    """
    try:
        fetched = fetch_jwks(uri, allow_private=allow_private)
    except JwksFetchError as exc:
        raise ClientKeyError(exc.rule, exc.description) from None
    try:
        validate_client_jwks(fetched.document)
    except IdpError as exc:
        reason = f"jwks_uri returned no usable JWKS: {exc}"
        raise ClientKeyError(INVALID_JWKS, reason) from None
    return fetched.keys


class ClientKeyResolver:
    def __init__(self, allow_private_hosts: bool = False) -> None:
        self.allow_private_hosts = allow_private_hosts
        self._lock = threading.Lock()
        self._remote: dict[str, _CachedJwks] = {}
        # Registered keys parsed once per registration (registrations are immutable and
        # replaced when the client changes), keyed by client id.
        self._registered: dict[str, tuple[KeyOwner, KeySet]] = {}

    def key_for(self, client: KeyOwner, header: dict[str, Any]) -> Key:
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ClientKeyError("kid", "assertion 'kid' header must be a string")
        if client.jwks_uri:
            return self._remote_key(client.jwks_uri, kid)
        if not client.jwks:
            raise ClientKeyError("no_client_keys", "no keys are registered for the signer")
        return _select(self._registered_keys(client), kid)

    def _registered_keys(self, client: KeyOwner) -> KeySet:
        cached = self._registered.get(client.id)
        # Identity is the cheap test for cached client registrations; equality serves
        # registrations read afresh per request (issuers).
        if cached is not None and (cached[0] is client or cached[0] == client):
            return cached[1]
        keys = KeySet.import_key_set(cast(Any, client.jwks))
        if len(self._registered) >= MAX_PARSED_CLIENTS:
            self._registered.clear()
        self._registered[client.id] = (client, keys)
        return keys

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
                fresh = _CachedJwks(fetch_client_jwks(uri, self.allow_private_hosts), now)
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
        raise ClientKeyError("unknown_kid", f"the signer has no key with kid {kid!r}")
    if len(keys.keys) == 1:
        return keys.keys[0]
    raise ClientKeyError(
        "kid_required", "several keys are registered; the assertion must name a kid"
    )
