"""The in-process view of the key store that the web workers sign and publish with.

Workers re-read the store only when its change marker moves (checked at most once per
``CHECK_INTERVAL``): one ``stat`` of the manifest for the file store, one indexed read
of a version counter for the database store. A rotation by ``idp keys rotate`` so
reaches every worker within seconds, and the token hot path stays cheap.

A worker never trades good keys for a worse view: an unreadable, partial or missing
store leaves it with the keys it last loaded, and a worker that never loaded any has
none (it is then not ready and answers 503 rather than publish an empty key set).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import Key, KeySet
from sqlalchemy.exc import SQLAlchemyError

from idp.errors import KeyStoreError
from idp.keys.store import BaseKeyStore

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
PUBLISH_ORDER = {"active": 0, "next": 1, "retired": 2}
LOAD_ERRORS = (KeyStoreError, JoseError, ValueError, KeyError, TypeError, SQLAlchemyError)


@dataclass(frozen=True)
class LoadedKeys:
    active: Key | None
    jwks_body: bytes
    etag: str

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        """A JWS signed by the active key, naming it by ``kid``, with its own alg.

        The alg is passed explicitly: joserfc otherwise allows only its "recommended"
        algorithms, which leave out PS256 and EdDSA. The payload is the claims as compact
        JSON, as ``joserfc.jwt.encode`` makes it; signing with the one key rather than a
        key set spares a key lookup per token.
        """
        if self.active is None:
            raise KeyStoreError("no active signing key")
        alg = str(self.active.alg)
        header = {"typ": typ, "alg": alg, "kid": self.active.kid}
        payload = json.dumps(claims, separators=(",", ":")).encode()
        if alg == "EdDSA":
            # IDP_SIGNING_ALG names EdDSA deliberately (what most verifiers understand);
            # joserfc's per-token RFC 9864 deprecation warning would only flood the logs.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)
                return jws.serialize_compact(header, payload, self.active, algorithms=[alg])
        return jws.serialize_compact(header, payload, self.active, algorithms=[alg])


# What a worker holds before it ever loaded a usable store: nothing to sign or publish.
EMPTY = LoadedKeys(active=None, jwks_body=b'{"keys":[]}', etag="empty")


def load_keys(store: BaseKeyStore) -> LoadedKeys:
    """The store's keys, or KeyStoreError when they are not a set one may serve: a
    published set must hold exactly one active key, and every key must parse."""
    snapshot = sorted(
        store.snapshot(), key=lambda item: (PUBLISH_ORDER[item[0].state], item[0].created_at)
    )
    public: list[dict[str, Any]] = []
    active: list[Key] = []
    for record, private_jwk in snapshot:
        key = KeySet.import_key_set({"keys": [private_jwk]}).keys[0]
        if key.kid != record.kid:
            raise KeyStoreError(f"key {record.kid} holds a JWK with another kid")
        public.append(key.as_dict(private=False))
        if record.state == "active":
            active.append(key)
    if len(active) != 1:
        raise KeyStoreError(f"the key store holds {len(active)} active keys; exactly one must sign")
    body = json.dumps({"keys": public}, separators=(",", ":")).encode()
    etag = hashlib.sha256(body).hexdigest()[:32]
    return LoadedKeys(active=active[0], jwks_body=body, etag=etag)


_UNSET = object()


class KeyRing:
    def __init__(self, store: BaseKeyStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._loaded = EMPTY
        self._marker: object = _UNSET
        # The marker whose failure was last logged: one line per broken state, not per check.
        self._reported: object = _UNSET
        self._checked_at = float("-inf")

    @property
    def has_keys(self) -> bool:
        return self._loaded.active is not None

    def has_active_key(self) -> bool:
        """Whether the store's current keys include an active one (checked as ``current``)."""
        return self.current().active is not None

    def current(self) -> LoadedKeys:
        if time.monotonic() - self._checked_at >= CHECK_INTERVAL:
            self._refresh()
        return self._loaded

    def _refresh(self) -> None:
        # With keys in hand, one request checks and the others in flight keep the current
        # keys (at most one interval old) rather than queue; without any they wait for
        # the first load instead of failing.
        if not self._lock.acquire(blocking=not self.has_keys):
            return
        try:
            self._checked_at = time.monotonic()
            try:
                marker = self.store.change_marker()
            except LOAD_ERRORS as exc:
                self._report("check", exc)
                return
            if marker == self._marker:
                return
            if marker is None:
                self._marker = None
                if self.has_keys:
                    logger.error(
                        "key store %s has no keys any more; keeping the last good keys",
                        self.store.location,
                    )
                return
            try:
                loaded = load_keys(self.store)
            except LOAD_ERRORS as exc:
                # The marker stays as it was, so the next check tries again.
                if marker != self._reported:
                    self._reported = marker
                    self._report("reload", exc)
                return
            self._loaded = loaded
            self._marker = marker
            self._reported = _UNSET
        finally:
            self._lock.release()

    def _report(self, what: str, exc: Exception) -> None:
        # Key-store errors name files and kids, never key material; a database error is
        # reduced to its class (its text may carry bound values).
        reason = str(exc) if isinstance(exc, KeyStoreError) else type(exc).__name__
        kept = "keeping the last good keys" if self.has_keys else "no keys to serve"
        logger.error("key store %s failed: %s; %s", what, reason, kept)
