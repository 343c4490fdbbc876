"""private_key_jwt (RFC 7523 §2.2, OIDC Core §9) on Authlib's JWTBearerClientAssertion.

Authlib finds the client by the assertion's ``sub`` and leaves the rest to the server:
the algorithm allow-list, ``iss``, ``aud``, the time claims and maximum lifetime, and
``jti`` replay are the shared assertion rules of ``idp.oauth.assertions``; the
``client_id`` form field and the registered method are checked here.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import request as flask_request

from idp.oauth.assertions import AssertionRules, AssertionValidator
from idp.oauth.client_keys import ClientKeyResolver, KeyPicker
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import ClientAuthFailed
from idp.settings import Settings
from idp.stores import ReplayStore


class ClientKeyPicker(KeyPicker):
    """The client's key for its assertion; a missing key is invalid_client."""

    def __init__(self, client: OAuthClient, resolver: ClientKeyResolver) -> None:
        super().__init__(client.row, resolver, ClientAuthFailed)
        self.client = client


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

    def resolve_client_public_key(self, client: OAuthClient) -> ClientKeyPicker:
        # A callable, not a key: the client's key is picked by the assertion's own kid header.
        return ClientKeyPicker(client, self.key_resolver)

    def process_assertion_claims(
        self, assertion: str, resolve_key: ClientKeyPicker
    ) -> dict[str, Any]:
        client = resolve_key.client
        client_id = client.get_client_id()
        if client.row.auth_method != self.CLIENT_AUTH_METHOD:
            raise ClientAuthFailed("method", "client is not registered for private_key_jwt")
        form_client_id = flask_request.form.get("client_id")
        if form_client_id is not None and form_client_id != client_id:
            raise ClientAuthFailed("client_id", "client_id does not match the assertion 'sub'")
        # Authlib found the client by 'sub'; RFC 7523 §3 wants 'iss' to be the client too.
        return self.validator.validate(assertion, resolve_key, issuer=client_id)
