"""The client authentication methods of every OAuth endpoint, one per way a request can
present its client: the Basic header and the ``client_secret`` form field (RFC 6749
§2.3.1), and a signed assertion (``private_key_jwt``, RFC 7523 §2.2, OIDC Core §9).

Each method names the client the request claims to be and then proves the claim;
``IdpAuthorizationServer.authenticate_client`` runs the one method the request presents
and, between the two steps, refuses a client that did not register that method.

For ``private_key_jwt`` the client is found by the assertion's ``sub``, as Authlib does;
the algorithm allow-list, ``iss``, ``aud``, the time claims and maximum lifetime, and
``jti`` replay are the shared assertion rules of ``idp.oauth.assertions``; the
``client_id`` form field is checked here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from authlib.oauth2.rfc6749 import InvalidClientError
from joserfc.errors import JoseError

from idp.oauth.assertions import AssertionRules, AssertionValidator, parse_assertion
from idp.oauth.client_keys import ClientKeyResolver, KeyPicker
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import ClientAuthFailed
from idp.oauth.request_checks import CheckedRequest
from idp.registry import CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, PRIVATE_KEY_JWT
from idp.settings import Settings
from idp.stores import ReplayStore

if TYPE_CHECKING:
    from idp.oauth.server import EndpointRequest

QueryClient = Callable[[object], OAuthClient | None]
UNAUTHENTICATED = (
    "client authentication failed: unknown client, wrong secret, no credentials, "
    "or a method the client is not registered for"
)


def unauthenticated() -> ClientAuthFailed:
    """One answer for an unknown client, a wrong secret, missing credentials and a
    method the client did not register, so that none tells more than the others."""
    return ClientAuthFailed("credentials", UNAUTHENTICATED)


class ClientAuthMethod(Protocol):
    name: str

    def claimed_client(
        self, query_client: QueryClient, request: EndpointRequest
    ) -> OAuthClient | None:
        """The registered client the request says it comes from, if there is one."""
        ...

    def unregistered(self) -> ClientAuthFailed:
        """The refusal for a client that did not register this method."""
        ...

    def prove(self, client: OAuthClient, request: EndpointRequest) -> bool:
        """Whether the request's credentials prove it comes from ``client``; raises
        ClientAuthFailed for a broken rule that has its own answer."""
        ...


class ClientSecretAuth:
    """``client_secret_basic`` and ``client_secret_post``: a secret checked against the
    registered hash; every failure is ``unauthenticated``."""

    def __init__(self, name: str, credentials: Callable[[CheckedRequest], tuple[str, str] | None]):
        self.name = name
        self.credentials = credentials

    def claimed_client(
        self, query_client: QueryClient, request: EndpointRequest
    ) -> OAuthClient | None:
        presented = self.credentials(request.checked)
        return query_client(presented[0]) if presented is not None else None

    def unregistered(self) -> ClientAuthFailed:
        return unauthenticated()

    def prove(self, client: OAuthClient, request: EndpointRequest) -> bool:
        presented = self.credentials(request.checked)
        return presented is not None and client.check_client_secret(presented[1])


def _basic_credentials(checked: CheckedRequest) -> tuple[str, str] | None:
    return checked.presented.basic  # decoded by the input checks


def _form_credentials(checked: CheckedRequest) -> tuple[str, str] | None:
    client_id = checked.params.get("client_id")
    secret = checked.params.get("client_secret")
    return (client_id, secret) if client_id and secret else None


class PrivateKeyJWTAuth:
    """The assertion is split and decoded once: its unverified ``sub`` names the client,
    and the same parsed JWS is then verified with that client's key."""

    name = PRIVATE_KEY_JWT

    def __init__(
        self, settings: Settings, replay_store: ReplayStore, key_resolver: ClientKeyResolver
    ) -> None:
        self.key_resolver = key_resolver
        # Client jtis are recorded as "<client_id>:<jti>", as they always were.
        rules = AssertionRules.from_settings(settings)
        self.validator = AssertionValidator(rules, replay_store, ClientAuthFailed)

    def claimed_client(
        self, query_client: QueryClient, request: EndpointRequest
    ) -> OAuthClient | None:
        # The input checks made sure the type is jwt-bearer and the assertion is there.
        try:
            parsed = parse_assertion(request.checked.params["client_assertion"])
        except (JoseError, ValueError, TypeError):
            raise InvalidClientError(description="Invalid JWT assertion.") from None
        client_id = parsed.claims.get("sub")
        if not isinstance(client_id, str):
            raise InvalidClientError(description="Invalid claim: 'sub'")
        request.client_assertion = parsed
        return query_client(client_id)

    def unregistered(self) -> ClientAuthFailed:
        return ClientAuthFailed("method", "client is not registered for private_key_jwt")

    def prove(self, client: OAuthClient, request: EndpointRequest) -> bool:
        form_client_id = request.checked.params.get("client_id")
        if form_client_id is not None and form_client_id != client.get_client_id():
            raise ClientAuthFailed("client_id", "client_id does not match the assertion 'sub'")
        parsed = request.client_assertion
        assert parsed is not None, "claimed_client parsed the assertion"
        # RFC 7523 §3 wants 'iss' to be the client too; the validator checks it.
        # The client's key named by the assertion's kid; a missing key is invalid_client.
        picker = KeyPicker(client.row, self.key_resolver, ClientAuthFailed)
        later = request.checked.deferred if request.defer_replay_checks else None
        self.validator.validate_parsed(parsed, picker, issuer=client.get_client_id(), later=later)
        return True


def client_auth_methods(
    settings: Settings, replay_store: ReplayStore, key_resolver: ClientKeyResolver
) -> dict[str, ClientAuthMethod]:
    """Every method idp accepts, by the name a client registers (``idp.registry``)."""
    methods: tuple[ClientAuthMethod, ...] = (
        ClientSecretAuth(CLIENT_SECRET_BASIC, _basic_credentials),
        ClientSecretAuth(CLIENT_SECRET_POST, _form_credentials),
        PrivateKeyJWTAuth(settings, replay_store, key_resolver),
    )
    return {method.name: method for method in methods}
