"""Signing-key generation: cryptography makes the key, joserfc wraps it as a JWK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

RSA_KEY_BITS = 3072

_GENERATORS: dict[str, Callable[[], Key]] = {
    "ES256": lambda: ECKey.import_key(ec.generate_private_key(ec.SECP256R1())),
    "RS256": lambda: RSAKey.import_key(rsa.generate_private_key(65537, RSA_KEY_BITS)),
    "PS256": lambda: RSAKey.import_key(rsa.generate_private_key(65537, RSA_KEY_BITS)),
    "EdDSA": lambda: OKPKey.import_key(ed25519.Ed25519PrivateKey.generate()),
}


def generate_signing_key(alg: str) -> dict[str, Any]:
    """A private JWK dict with ``kid`` (RFC 7638 thumbprint), ``alg`` and ``use``."""
    key = _GENERATORS[alg]()
    jwk = key.as_dict(private=True)
    jwk.update(kid=key.thumbprint(), alg=alg, use="sig")
    return jwk
