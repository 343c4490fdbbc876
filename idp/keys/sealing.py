"""Private keys at rest in the database: AES-256-GCM under a key-encryption key (KEK)
that only the idp processes hold (IDP_KEYS_ENCRYPTION_KEY)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from idp.errors import KeyStoreError

NONCE_BYTES = 12


class KeySealer:
    def __init__(self, kek: bytes) -> None:
        self._aead = AESGCM(kek)
        # Tells keys sealed under another KEK apart from damaged ones; a hash reveals
        # nothing usable about a 256-bit random key.
        self.kek_id = hashlib.sha256(b"idp key-encryption key id\0" + kek).hexdigest()[:16]

    @staticmethod
    def _associated_data(kid: str) -> bytes:
        return b"idp signing key\0" + kid.encode()

    def seal(self, kid: str, jwk: dict[str, Any]) -> bytes:
        nonce = os.urandom(NONCE_BYTES)  # random nonces: a few keys per KEK, no reuse risk
        plain = json.dumps(jwk, separators=(",", ":")).encode()
        return nonce + self._aead.encrypt(nonce, plain, self._associated_data(kid))

    def open(self, kid: str, sealed: bytes, kek_id: str) -> dict[str, Any]:
        if kek_id != self.kek_id:
            raise KeyStoreError(
                f"key {kid} was sealed with another IDP_KEYS_ENCRYPTION_KEY "
                f"(id {kek_id}, this process has {self.kek_id})"
            )
        try:
            plain = self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], self._associated_data(kid)
            )
        except InvalidTag:
            raise KeyStoreError(f"key {kid} fails its integrity check (damaged or moved)") from None
        jwk = json.loads(plain)
        if not isinstance(jwk, dict):
            raise KeyStoreError(f"key {kid} does not hold a JWK object")
        return jwk
