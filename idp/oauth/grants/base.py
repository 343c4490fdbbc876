"""What the grants share: Authlib's view of a user, the scope of a new token, and the tail
of the grants that sign a user in (issue, add the ID token, store the refresh token).

Each grant narrows the requested scope once, with ``token_scope`` (idp.users.policy); the
token generator issues the scope it is given (idp.oauth.token_generator)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidScopeError

from idp.models import User, utcnow
from idp.oauth.clients import OAuthClient
from idp.oauth.id_token import id_token_for
from idp.registry import AUTH_METHODS
from idp.tokens import refresh_tokens
from idp.users.policy import grantable_scopes, narrow_scope

if TYPE_CHECKING:
    from idp.oauth.server import IdpAuthorizationServer

CLIENT_AUTH_METHODS = list(AUTH_METHODS)


class IdpUser:
    """Authlib's view of a user; ``session_id`` is the refresh-token family of the login."""

    def __init__(self, row: User, session_id: str | None = None) -> None:
        self.row = row
        self.session_id = session_id

    def get_user_id(self) -> str:
        return self.row.id


def token_scope(
    client: OAuthClient,
    user: User | None,
    requested: str | None,
    cap: tuple[str, ...] | None = None,
) -> str:
    """A new token's scope (idp.users.policy): ``requested`` within what the client, the
    user and the ``cap`` allow; none requested means all of that."""
    scope = narrow_scope(grantable_scopes(client.row.scopes, user, cap), requested)
    if scope is None:
        raise InvalidScopeError()
    if not scope and user is not None:
        raise InvalidScopeError("the client and the user share no scope")
    return scope


class UserTokenGrant:
    """Shared tail of the password and refresh grants: issue, add id_token, store refresh."""

    request: Any
    server: IdpAuthorizationServer

    def authenticate_token_endpoint_client(self) -> OAuthClient:
        # Authlib's password grant sets request.client only after authenticate_user,
        # which needs the client's tenant.
        client = super().authenticate_token_endpoint_client()  # type: ignore[misc]
        self.request.client = client
        return client

    def issue(self, user: User, scope: str, lineage_of: Any) -> dict[str, Any]:
        client: OAuthClient = self.request.client
        with_refresh = client.check_grant_type("refresh_token")
        token = self.generate_token(  # type: ignore[attr-defined]
            user=IdpUser(user, lineage_of.family_id),
            scope=scope,
            include_refresh_token=with_refresh,
        )
        if "openid" in scope.split():
            token["id_token"] = id_token_for(
                self.server.runtime, client, user, lineage_of.auth_time
            )
        if "refresh_token" in token:
            refresh_tokens.store(
                token["refresh_token"], lineage_of, client.get_client_id(), user.id, user.tenant_id
            )
            if lineage_of.expires_at is not None:
                # Seconds left of the login's absolute lifetime, which refreshes never extend.
                left = (lineage_of.expires_at - utcnow()).total_seconds()
                token["refresh_token_expires_in"] = max(0, int(left))
        return token
