"""Resource-server verification of idp access tokens (RFC 9068), importable on its own.

A resource server builds a ``TokenVerifier`` around ``RemoteJwks(jwks_url)``; idp's
own user API uses the same verifier around ``LocalJwks``, which reads the JWKS the
server publishes from the in-process key ring instead of over HTTP. Given one of
idp's revocation stores (``idp.stores``), a verifier also refuses revoked tokens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, Key, KeySet

from idp.jwks_fetch import JwksFetchError, fetch_jwks
from idp.registry import ACCEPTED_JWT_ALGS
from idp.tokens.claims import ClaimError, check_times

ACCESS_TOKEN_ALGS = ACCEPTED_JWT_ALGS
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")
DEFAULT_MAX_AGE = 300
MIN_REFETCH_INTERVAL = 10.0


class InvalidToken(Exception):
    """The token is not a valid, live access token of this issuer (RFC 6750 invalid_token)."""


class InsufficientScope(Exception):
    """The token lacks a scope the resource requires (RFC 6750 insufficient_scope)."""


class VerifierUnavailable(Exception):
    """Keys or the revocation list could not be consulted; the caller must fail closed."""


class JwksSource(Protocol):
    def key_set(self, refresh: bool = False) -> KeySet: ...


class Revocations(Protocol):
    """What ``idp.stores`` revocation stores offer a verifier (Redis or the database)."""

    def latest_revocation(self, keys: Sequence[str]) -> int | None: ...


def revocation_keys(claims: Mapping[str, Any]) -> list[str]:
    """Every revocation that can reach this token: its jti, its login session (``sid``),
    its client, and its user when it is a user's token."""
    keys = [f"jti:{claims['jti']}", f"client:{claims['client_id']}"]
    if claims.get("sid"):
        keys.append(f"sid:{claims['sid']}")
    if claims["sub"] != claims["client_id"]:
        keys.append(f"user:{claims['sub']}")
    return keys


def issued_at_ms(claims: Mapping[str, Any]) -> int:
    """When the token was issued, in milliseconds.

    ``iat`` has whole seconds only; idp adds ``iat_ms`` so that a revocation and a login
    in the same second are ordered exactly. Without it, the start of the ``iat`` second
    is taken, so such a token counts as issued before any revocation in that second.
    """
    precise = claims.get("iat_ms")
    if isinstance(precise, int) and not isinstance(precise, bool):
        return precise
    return int(claims["iat"]) * 1000


class RemoteJwks:
    """A JWKS URL, cached for its ``Cache-Control: max-age`` and re-fetched on an unknown kid.

    Fetched by idp.jwks_fetch: size-capped, no redirects. Private hosts are allowed by
    default, since a resource server usually reaches its idp on an internal network;
    ``allow_private=False`` refuses them (SSRF) when the URL comes from elsewhere.
    """

    def __init__(self, url: str, timeout: float = 5.0, *, allow_private: bool = True) -> None:
        self.url = url
        self.timeout = timeout
        self.allow_private = allow_private
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._expires = 0.0
        self._fetched = float("-inf")

    def key_set(self, refresh: bool = False) -> KeySet:
        now = time.monotonic()
        with self._lock:
            stale = self._keys is None or now >= self._expires
            may_refetch = now - self._fetched >= MIN_REFETCH_INTERVAL
            if stale or (refresh and may_refetch):
                self._fetch(now)
            assert self._keys is not None
            return self._keys

    def _fetch(self, now: float) -> None:
        try:
            fetched = fetch_jwks(self.url, allow_private=self.allow_private, timeout=self.timeout)
        except JwksFetchError as exc:
            if self._keys is None:
                raise VerifierUnavailable(f"cannot fetch JWKS: {exc.description}") from exc
            return  # keep serving the keys we have
        self._keys = fetched.keys
        self._fetched = now
        self._expires = now + (DEFAULT_MAX_AGE if fetched.max_age is None else fetched.max_age)


class LocalJwks:
    """The published JWKS of the server in this process, parsed once per key-store change."""

    def __init__(self, published: Callable[[], tuple[str, bytes]]) -> None:
        self.published = published
        self._cached: tuple[str, KeySet] | None = None

    def key_set(self, refresh: bool = False) -> KeySet:
        etag, body = self.published()
        cached = self._cached
        if cached is None or cached[0] != etag:
            cached = (etag, KeySet.import_key_set(json.loads(body)))
            self._cached = cached
        return cached[1]


@dataclass(frozen=True)
class AccessToken:
    claims: dict[str, Any]
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(str(self.claims.get("scope", "")).split())

    @property
    def subject(self) -> str:
        return str(self.claims["sub"])

    @property
    def is_user_token(self) -> bool:
        return self.claims.get("sub") != self.claims.get("client_id")


class TokenVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks: JwksSource,
        revocations: Revocations | None = None,
        leeway: int = 30,
        algorithms: Iterable[str] = ACCESS_TOKEN_ALGS,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.revocations = revocations
        self.leeway = leeway
        self.algorithms = list(algorithms)

    def verify(self, token: str, required_scopes: Iterable[str] = ()) -> AccessToken:
        decoded = self._decode(token)
        self._check_claims(decoded.claims)
        if self.revocations is not None:
            self._check_not_revoked(decoded.claims)
        missing = set(required_scopes) - decoded.scopes
        if missing:
            raise InsufficientScope(f"token lacks scope: {' '.join(sorted(missing))}")
        return decoded

    def _check_not_revoked(self, claims: Mapping[str, Any]) -> None:
        try:
            latest = self.revocations.latest_revocation(revocation_keys(claims))  # type: ignore[union-attr]
        except Exception as exc:  # any store failure: fail closed
            raise VerifierUnavailable("revocation store unreachable") from exc
        if latest is not None and issued_at_ms(claims) <= latest:
            raise InvalidToken("token has been revoked")

    def _decode(self, token: str) -> AccessToken:
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
            raise InvalidToken("not a JWS compact token")

        def pick_key(obj: GuestProtocol) -> Key:
            kid = obj.headers().get("kid")
            if not isinstance(kid, str):
                raise InvalidToken("token header names no kid")
            for refresh in (False, True):
                for key in self.jwks.key_set(refresh=refresh).keys:
                    if key.kid == kid:
                        return key
            raise InvalidToken("token signed by an unknown key")

        try:
            result = jwt.decode(token, pick_key, algorithms=self.algorithms)
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken(f"token rejected: {type(exc).__name__}") from None
        if result.header.get("typ", "").lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("token is not an RFC 9068 access token (typ)")
        return AccessToken(dict(result.claims), dict(result.header))

    def _check_claims(self, claims: dict[str, Any]) -> None:
        missing = [name for name in REQUIRED_CLAIMS if name not in claims]
        if missing:
            raise InvalidToken(f"token lacks claims: {', '.join(missing)}")
        if claims["iss"] != self.issuer:
            raise InvalidToken("token issuer mismatch")
        audience = claims["aud"]
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise InvalidToken("token audience mismatch")
        for name in ("sub", "client_id", "jti"):
            if not isinstance(claims[name], str):
                raise InvalidToken(f"token '{name}' is not a string")
        if "sid" in claims and not isinstance(claims["sid"], str):
            raise InvalidToken("token 'sid' is not a string")
        try:
            check_times(claims, time.time(), self.leeway, require_iat=True)
        except ClaimError as exc:
            raise InvalidToken(f"token {exc.description}") from None
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise InvalidToken("token 'scope' is not a string")
