"""The refresh token grant (RFC 6749 §6): one use per token, rotation, and reuse detection
that ends the whole session (RFC 9700 §4.14.2)."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, grants

from idp import audit
from idp.models import User, db
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import GrantRefused
from idp.oauth.grants.base import CLIENT_AUTH_METHODS, IdpUser, UserTokenGrant
from idp.tokens import refresh_tokens
from idp.users.policy import grantable_scopes, retained_scope, session_may_continue

REFRESH_REFUSED = "refresh token is unknown, expired or revoked"


class RefreshTokenGrant(UserTokenGrant, grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Any:
        client: OAuthClient = self.request.client
        grace = self.server.runtime.lifetimes.refresh_reuse_grace(client.row)
        try:
            row = refresh_tokens.consume(refresh_token, client.get_client_id(), grace)
        except refresh_tokens.RefreshTokenReused as reuse:
            family_id, user_id = reuse.row.family_id, reuse.row.user_id
            revoked = refresh_tokens.revoke_family(family_id)
            self.server.runtime.revoker.session(db.session, family_id)
            audit.record(
                "refresh_reuse_detected",
                tenant=client.tenant_name,
                client_id=client.get_client_id(),
                user_id=user_id,
                family_id=family_id,
                revoked=revoked,
            )
            raise GrantRefused(
                "reuse", "refresh token was already used; its sessions are revoked", durable=True
            ) from None
        if row is None:
            # One answer for every case, so that a token of another client or one revoked
            # after a password change tells its holder no more than an unknown one does.
            raise GrantRefused("refresh_token", REFRESH_REFUSED)
        return _RefreshTokenView(row)

    def authenticate_user(self, refresh_token: Any) -> IdpUser | None:
        row = refresh_token.row
        user = db.session.get(User, row.user_id)
        if user is None or not session_may_continue(user, row.auth_time):
            return None
        return IdpUser(user)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        refresh_token = self.request.refresh_token
        user = self.authenticate_user(refresh_token)
        if user is None:
            raise InvalidGrantError("the user of this refresh token can no longer sign in")
        requested = self.request.payload.scope or refresh_token.get_scope()
        # Scopes taken from the user or the client since the login are not renewed.
        allowed = grantable_scopes(self.request.client.row.scopes, user.row)
        scope = retained_scope(requested, allowed)
        if not scope:
            raise InvalidGrantError("none of this session's scopes is still granted")
        lineage = refresh_tokens.child_lineage(refresh_token.row)
        token = self.issue(user.row, scope, lineage)
        self.request.user = user
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _RefreshTokenView:
    """What Authlib's refresh grant asks of a stored token."""

    def __init__(self, row: Any) -> None:
        self.row = row

    def check_client(self, client: OAuthClient) -> bool:
        return client.get_client_id() == self.row.client_id

    def get_scope(self) -> str:
        return self.row.scope
