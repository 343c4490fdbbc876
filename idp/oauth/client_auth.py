"""private_key_jwt (RFC 7523 §2.2, OIDC Core §9) on Authlib's JWTBearerClientAssertion.

Authlib leaves several rules to the server: the
algorithm allow-list, ``iat``/``nbf`` and maximum lifetime, single-element ``aud``
arrays, the ``client_id`` form field, and ``jti`` replay. Each is enforced here.
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import request as flask_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import CompactSignature

from idp.oauth.client_keys import ClientKeyError, ClientKeyResolver
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import ClientAuthFailed, TemporarilyUnavailable
from idp.settings import Settings
from idp.stores import ReplayStore, StoreUnavailable

ASSERTION_ALGS = ("RS256", "PS256", "ES256", "EdDSA", "Ed25519")


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClientAuthFailed(name, f"assertion '{name}' must be a number")
    return float(value)


class KeyPicker:
    """Hands joserfc the client's key named by the assertion header (re-fetching if needed)."""

    def __init__(self, client: OAuthClient, resolver: ClientKeyResolver) -> None:
        self.client = client
        self.resolver = resolver

    def __call__(self, obj: CompactSignature) -> Key:
        try:
            return self.resolver.key_for(self.client.row, obj.headers())
        except ClientKeyError as exc:
            raise ClientAuthFailed(exc.rule, exc.description) from None


class PrivateKeyJWTAuth(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(
        self, settings: Settings, replay_store: ReplayStore, key_resolver: ClientKeyResolver
    ) -> None:
        super().__init__(validate_jti=True, leeway=settings.clock_skew)
        self.settings = settings
        self.replay_store = replay_store
        self.key_resolver = key_resolver

    def get_audiences(self) -> list[str]:
        return self.settings.assertion_audiences

    def resolve_client_public_key(self, client: OAuthClient) -> KeyPicker:
        # A callable, not a key: the client's key is picked by the assertion's own kid header.
        return KeyPicker(client, self.key_resolver)

    def process_assertion_claims(self, assertion: str, resolve_key: KeyPicker) -> dict[str, Any]:
        client = resolve_key.client
        if client.row.auth_method != self.CLIENT_AUTH_METHOD:
            raise ClientAuthFailed("method", "client is not registered for private_key_jwt")
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGS))
        except ClientAuthFailed:
            raise
        except JoseError as exc:
            rule = "alg" if "algorithm" in str(exc).lower() else "signature"
            raise ClientAuthFailed(rule, f"assertion rejected: {exc.description or exc}") from None
        except (ValueError, TypeError):
            raise ClientAuthFailed("malformed", "assertion is not a valid JWT") from None
        claims = dict(token.claims)
        self._check_extra_rules(claims, client)
        try:
            self.verify_claims(token.claims)
        except ClientAuthFailed:
            raise
        except InvalidClientError as exc:
            raise ClientAuthFailed("claims", exc.description or "invalid assertion") from None
        return claims

    def _check_extra_rules(self, claims: dict[str, Any], client: OAuthClient) -> None:
        now = time.time()
        skew = self.settings.clock_skew
        form_client_id = flask_request.form.get("client_id")
        if form_client_id is not None and form_client_id != client.get_client_id():
            raise ClientAuthFailed("client_id", "client_id does not match the assertion 'sub'")
        if claims.get("iss") != client.get_client_id():
            raise ClientAuthFailed("iss", "assertion 'iss' must equal 'sub' and the client_id")
        audience = claims.get("aud")
        if isinstance(audience, list):
            if len(audience) != 1:
                raise ClientAuthFailed("aud", "assertion 'aud' array must hold exactly one value")
            audience = audience[0]
        if audience not in self.get_audiences():
            raise ClientAuthFailed("aud", "assertion 'aud' is not this authorization server")
        expires = _number(claims, "exp")
        if expires is None:
            raise ClientAuthFailed("exp", "assertion 'exp' is required")
        if expires <= now - skew:
            raise ClientAuthFailed("exp", "assertion has expired")
        issued = _number(claims, "iat")
        not_before = _number(claims, "nbf")
        for name, moment in (("iat", issued), ("nbf", not_before)):
            if moment is not None and moment > now + skew:
                raise ClientAuthFailed(name, f"assertion '{name}' is in the future")
        lifetime = expires - (issued if issued is not None else now)
        if lifetime > self.settings.assertion_max_lifetime:
            raise ClientAuthFailed(
                "lifetime",
                "assertion lifetime exceeds "
                f"IDP_ASSERTION_MAX_LIFETIME ({self.settings.assertion_max_lifetime} s)",
            )
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise ClientAuthFailed("jti", "assertion 'jti' is required (a string of 1-256 chars)")

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        key = f"{claims['sub']}:{jti}"
        try:
            fresh = self.replay_store.claim(key, int(claims["exp"]) + self.settings.clock_skew)
        except StoreUnavailable:
            raise TemporarilyUnavailable("replay store unreachable; try again later") from None
        if not fresh:
            raise ClientAuthFailed("replay", "assertion 'jti' was already used")
        return True
