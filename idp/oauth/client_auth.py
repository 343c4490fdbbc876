"""private_key_jwt (RFC 7523 §2.2, OIDC Core §9) on Authlib's JWTBearerClientAssertion.

The client is found by the assertion's ``sub``, as Authlib does; the algorithm
allow-list, ``iss``, ``aud``, the time claims and maximum lifetime, and ``jti`` replay
are the shared assertion rules of ``idp.oauth.assertions``; the ``client_id`` form
field and the registered method are checked here.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc.errors import JoseError

from idp.oauth.assertions import AssertionRules, AssertionValidator, parse_assertion
from idp.oauth.client_keys import ClientKeyResolver, KeyPicker
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import ClientAuthFailed
from idp.settings import Settings
from idp.stores import ReplayStore


class PrivateKeyJWTAuth(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(
        self, settings: Settings, replay_store: ReplayStore, key_resolver: ClientKeyResolver
    ) -> None:
        super().__init__(validate_jti=False, leeway=settings.clock_skew)
        self.key_resolver = key_resolver
        rules = AssertionRules(
            audiences=tuple(settings.assertion_audiences),
            max_lifetime=settings.assertion_max_lifetime,
            leeway=settings.clock_skew,
        )
        # Client jtis are recorded as "<client_id>:<jti>", as they always were.
        self.validator = AssertionValidator(rules, replay_store, ClientAuthFailed)

    def __call__(self, query_client: Any, request: Any) -> OAuthClient | None:
        """Authlib's flow, with the assertion split and decoded once: its unverified
        ``sub`` names the client, and the same parsed JWS is then verified with that
        client's key. Failures before the client is known are Authlib's own errors."""
        form = request.form
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") != self.CLIENT_ASSERTION_TYPE or not assertion:
            return None  # not this method: Authlib tries the client's others
        try:
            parsed = parse_assertion(assertion)
        except (JoseError, ValueError, TypeError):
            raise InvalidClientError(description="Invalid JWT assertion.") from None
        client_id = parsed.claims.get("sub")
        if not isinstance(client_id, str):
            raise InvalidClientError(description="Invalid claim: 'sub'")
        client = query_client(client_id)
        if not client:
            raise InvalidClientError(description="The client does not exist on this server.")
        request.client = client
        self._check_registration(client, form)
        # RFC 7523 §3 wants 'iss' to be the client too; the validator checks it.
        # The client's key named by the assertion's kid; a missing key is invalid_client.
        picker = KeyPicker(client.row, self.key_resolver, ClientAuthFailed)
        later = request.checked.deferred if request.defer_replay_checks else None
        self.validator.validate_parsed(parsed, picker, issuer=client_id, later=later)
        return self.authenticate_client(client)

    def _check_registration(self, client: OAuthClient, form: Any) -> None:
        if client.row.auth_method != self.CLIENT_AUTH_METHOD:
            raise ClientAuthFailed("method", "client is not registered for private_key_jwt")
        form_client_id = form.get("client_id")
        if form_client_id is not None and form_client_id != client.get_client_id():
            raise ClientAuthFailed("client_id", "client_id does not match the assertion 'sub'")
