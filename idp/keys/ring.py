"""The in-process view of the key store that the web workers sign and publish with.

Workers re-read the manifest only when it changes on disk (checked at most once
per ``CHECK_INTERVAL``), so the token hot path costs one ``stat`` a second, and a
rotation by ``idp keys rotate`` reaches every worker within seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import Key, KeySet

from idp.errors import KeyStoreError
from idp.keys.store import KeyStore

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
PUBLISH_ORDER = {"active": 0, "next": 1, "retired": 2}


@dataclass(frozen=True)
class LoadedKeys:
    active: Key | None
    jwks_body: bytes
    etag: str

    @property
    def signing_set(self) -> KeySet:
        """Only the active key: joserfc picks a random member of a multi-key set."""
        if self.active is None:
            raise KeyStoreError("no active signing key")
        return KeySet([self.active])

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        """A JWS signed by the active key, naming it by ``kid``, with its own alg.

        The alg is passed explicitly: joserfc otherwise allows only its "recommended"
        algorithms, which leave out PS256 and EdDSA.
        """
        signing_set = self.signing_set
        key = signing_set.keys[0]
        alg = str(key.alg)
        header = {"typ": typ, "alg": alg, "kid": key.kid}
        if alg == "EdDSA":
            # IDP_SIGNING_ALG names EdDSA deliberately (what most verifiers understand);
            # joserfc's per-token RFC 9864 deprecation warning would only flood the logs.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)
                return jwt.encode(header, claims, signing_set, algorithms=[alg])
        return jwt.encode(header, claims, signing_set, algorithms=[alg])


EMPTY = LoadedKeys(active=None, jwks_body=b'{"keys":[]}', etag="empty")


def _fingerprint(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def load_keys(store: KeyStore) -> LoadedKeys:
    records = sorted(store.records(), key=lambda r: (PUBLISH_ORDER[r.state], r.created_at))
    public: list[dict[str, Any]] = []
    active: Key | None = None
    for record in records:
        key = KeySet.import_key_set({"keys": [store.private_jwk(record.kid)]}).keys[0]
        public.append(key.as_dict(private=False))
        if record.state == "active":
            active = key
    body = json.dumps({"keys": public}, separators=(",", ":")).encode()
    etag = hashlib.sha256(body).hexdigest()[:32]
    return LoadedKeys(active=active, jwks_body=body, etag=etag)


class KeyRing:
    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._loaded = EMPTY
        self._fingerprint: tuple[int, int, int] | None = None
        self._checked_at = float("-inf")

    def current(self) -> LoadedKeys:
        if time.monotonic() - self._checked_at >= CHECK_INTERVAL:
            self._refresh()
        return self._loaded

    def _refresh(self) -> None:
        with self._lock:
            self._checked_at = time.monotonic()
            fingerprint = _fingerprint(self.store.manifest_path)
            if fingerprint == self._fingerprint:
                return
            try:
                self._loaded = EMPTY if fingerprint is None else load_keys(self.store)
            except (KeyStoreError, JoseError, ValueError) as exc:
                # Keep serving the last good keys; the next check tries again.
                logger.error("key store reload failed: %s", exc)
                return
            self._fingerprint = fingerprint
