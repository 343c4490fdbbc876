"""Authlib's view of a registered client, and the client lookup Authlib calls."""

from __future__ import annotations

from collections.abc import Callable

from authlib.oauth2.rfc6749 import ClientMixin

from idp.models import ClientRegistration
from idp.registrations.cache import ClientRegistry
from idp.text import is_storable
from idp.users.policy import narrow_scope

MAX_CLIENT_ID_LENGTH = 64


class OAuthClient(ClientMixin):
    def __init__(self, row: ClientRegistration) -> None:
        self.row = row

    @property
    def tenant_name(self) -> str:
        return self.row.tenant_name

    def get_client_id(self) -> str:
        return self.row.id

    def get_default_redirect_uri(self) -> None:
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.row.check_secret(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # A client authenticates with the one method it registered, at every endpoint.
        return method == self.row.auth_method

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """Authlib's hook, answered by the one narrowing rule (idp.users.policy)."""
        return narrow_scope(self.row.scopes, scope)


def client_lookup(registry: ClientRegistry) -> Callable[[object], OAuthClient | None]:
    """Authlib's ``query_client``: the registry's cached registration (a request asks
    once, for the client its one authentication method names). An id no client can have
    (the wrong type or length, a NUL or lone surrogate from an assertion's ``sub``) is
    unknown without a query."""

    def query_client(client_id: object) -> OAuthClient | None:
        if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_LENGTH:
            return None
        if not is_storable(client_id):
            return None
        registration = registry.get(client_id)
        return OAuthClient(registration) if registration is not None else None

    return query_client
