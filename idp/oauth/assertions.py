"""JWT assertions (RFC 7523 §3): the rules a client assertion (``private_key_jwt``) and an
authorization grant assertion share, in one validator.

Each user of the validator says which error a broken rule raises (``invalid_client``
for client authentication, ``invalid_grant`` for a grant) and under which namespace
used ``jti`` values are recorded, so that one party's ``jti`` never blocks another's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import GuestProtocol, Key

from idp.oauth.errors import TemporarilyUnavailable
from idp.registry import ACCEPTED_JWT_ALGS
from idp.settings import Settings
from idp.stores import PendingClaim, ReplayStore, StoreUnavailable
from idp.text import is_storable
from idp.tokens.claims import ClaimError, check_times

MAX_JTI_LENGTH = 256
TEXT_RULE = "a string without NUL or lone surrogates"
UNREACHABLE = "replay store unreachable; try again later"
PickKey = Callable[[GuestProtocol], Key]
# Builds the OAuth error for a broken rule: (rule name for metrics, description).
ErrorFactory = Callable[[str, str], Exception]


# Built once: joserfc would otherwise build a registry for the allow-list on every call.
REGISTRY = jws.JWSRegistry(algorithms=list(ACCEPTED_JWT_ALGS))


@dataclass(frozen=True)
class ParsedAssertion:
    """A compact JWS split and decoded once. ``claims`` are not to be trusted until the
    validator has verified the signature over the very payload they were read from."""

    token: jws.CompactSignature
    claims: dict[str, Any]


def parse_assertion(assertion: str) -> ParsedAssertion:
    """Raises JoseError (not a compact JWS) or ValueError (a payload that is not a JSON
    object), as ``joserfc.jwt.decode`` would."""
    token = jws.extract_compact(assertion.encode(), registry=REGISTRY)
    claims = json.loads(token.payload or b"")
    if not isinstance(claims, dict):
        raise ValueError("the payload is not a JSON object")
    return ParsedAssertion(token, claims)


def _is_name(value: Any) -> TypeGuard[str]:
    """A non-empty string the user store and replay store can hold: ``sub`` names a
    client or a linked user, ``jti`` becomes a replay-store key (``idp.text``)."""
    return isinstance(value, str) and value != "" and is_storable(value)


@dataclass(frozen=True)
class AssertionRules:
    audiences: tuple[str, ...]  # accepted ``aud`` values (a string or a one-element array)
    max_lifetime: int  # seconds from ``iat`` (or now) to ``exp``
    leeway: int  # clock skew, seconds
    lifetime_setting: str = "IDP_ASSERTION_MAX_LIFETIME"

    @classmethod
    def from_settings(cls, settings: Settings) -> AssertionRules:
        """The rules every assertion idp accepts is held to: a client's and an issuer's."""
        return cls(
            audiences=tuple(settings.assertion_audiences),
            max_lifetime=settings.assertion_max_lifetime,
            leeway=settings.clock_skew,
        )


class AssertionValidator:
    def __init__(
        self,
        rules: AssertionRules,
        replay_store: ReplayStore,
        error: ErrorFactory,
        replay_namespace: str = "",
    ) -> None:
        self.rules = rules
        self.replay_store = replay_store
        self.error = error
        self.replay_namespace = replay_namespace

    def parse(self, assertion: str) -> ParsedAssertion:
        """``parse_assertion``, refused with the validator's error."""
        try:
            return parse_assertion(assertion)
        except JoseError as exc:
            raise self._refusal(exc) from None
        except (ValueError, TypeError):
            raise self.error("malformed", "assertion is not a valid JWT") from None

    def validate_parsed(
        self,
        parsed: ParsedAssertion,
        pick_key: PickKey,
        issuer: str,
        later: DeferredClaims | None = None,
    ) -> dict[str, Any]:
        """The claims of a well-signed assertion from ``issuer`` that breaks no rule; its
        ``jti`` is then spent. The caller parsed it once, to find its signer from claims it
        may not trust before this. Raises the validator's error, or TemporarilyUnavailable
        when the replay store cannot say whether the ``jti`` was used. With ``later``, the
        replay check is started and left there for the caller to settle before it answers."""
        self._verify(parsed.token, pick_key)
        self._check_claims(parsed.claims, issuer)
        self._spend_jti(parsed.claims, issuer, later)
        return parsed.claims

    def _verify(self, token: jws.CompactSignature, pick_key: PickKey) -> None:
        try:
            if not jws.validate_compact(token, pick_key, registry=REGISTRY):
                raise BadSignatureError()
        except JoseError as exc:
            raise self._refusal(exc) from None
        except (ValueError, TypeError):
            raise self.error("malformed", "assertion is not a valid JWT") from None

    def _refusal(self, exc: JoseError) -> Exception:
        rule = "alg" if "algorithm" in str(exc).lower() else "signature"
        return self.error(rule, f"assertion rejected: {exc.description or exc}")

    def _check_claims(self, claims: dict[str, Any], issuer: str) -> None:
        if claims.get("iss") != issuer:
            raise self.error("iss", "assertion 'iss' is not the expected issuer")
        if not _is_name(claims.get("sub")):
            raise self.error("sub", f"assertion 'sub' is required ({TEXT_RULE})")
        self._check_audience(claims.get("aud"))
        try:
            check_times(
                claims, time.time(), self.rules.leeway, max_lifetime=self.rules.max_lifetime
            )
        except ClaimError as exc:
            description = f"assertion {exc.description}"
            if exc.rule == "lifetime":
                description = (
                    f"assertion lifetime exceeds {self.rules.lifetime_setting} "
                    f"({self.rules.max_lifetime} s)"
                )
            raise self.error(exc.rule, description) from None
        jti = claims.get("jti")
        if not _is_name(jti) or len(jti) > MAX_JTI_LENGTH:
            raise self.error(
                "jti", f"assertion 'jti' is required (1-{MAX_JTI_LENGTH} chars, {TEXT_RULE})"
            )

    def _check_audience(self, audience: Any) -> None:
        # RFC 7523 §3 allows an array; idp takes exactly one value so that an assertion
        # meant for several parties is never accepted here (RFC 7523bis).
        if isinstance(audience, list):
            if len(audience) != 1:
                raise self.error("aud", "assertion 'aud' array must hold exactly one value")
            audience = audience[0]
        if audience not in self.rules.audiences:
            raise self.error("aud", "assertion 'aud' is not this authorization server")

    def _spend_jti(self, claims: dict[str, Any], issuer: str, later: DeferredClaims | None) -> None:
        key = f"{self.replay_namespace}{issuer}:{claims['jti']}"
        try:
            pending = self.replay_store.begin_claim(key, int(claims["exp"]) + self.rules.leeway)
        except StoreUnavailable:
            raise TemporarilyUnavailable(UNREACHABLE) from None
        claim = DeferredClaim(pending, self.error)
        if later is None:
            claim.settle()
        else:
            later.add(claim)


class DeferredClaim:
    """One started replay check and the error its validator raises for a replay."""

    def __init__(self, pending: PendingClaim, error: ErrorFactory) -> None:
        self.pending = pending
        self.error = error

    def settle(self) -> None:
        """Raises the validator's error for a replay, TemporarilyUnavailable when the
        store could not answer."""
        try:
            fresh = self.pending.result()
        except StoreUnavailable:
            raise TemporarilyUnavailable(UNREACHABLE) from None
        if not fresh:
            raise self.error("replay", "assertion 'jti' was already used")


class DeferredClaims:
    """The ``jti`` claims of one request whose answers it reads only before its response
    leaves: the round trip to the replay store then overlaps the work of issuing the
    token. Only a request with nothing left to do but that work may defer: one that
    would read a password, rotate a refresh token or write anything first settles at
    once, so that a replayed assertion never gets that far."""

    def __init__(self) -> None:
        self.claims: list[DeferredClaim] = []

    def add(self, claim: DeferredClaim) -> None:
        self.claims.append(claim)

    def settle(self) -> None:
        while self.claims:
            claim = self.claims.pop(0)
            try:
                claim.settle()
            except BaseException:
                self.discard()
                raise

    def discard(self) -> None:
        """For a request that failed before it settled: no answer is read."""
        while self.claims:
            self.claims.pop().pending.discard()
