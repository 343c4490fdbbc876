"""The client credentials, password and refresh grants on Authlib's grant classes, with
the rules Authlib leaves to us: user-aware scopes, invalid_grant for bad credentials,
rotation and reuse detection.

Each grant narrows the requested scope once, here; the token generator issues the
scope it is given (idp.oauth.token_generator)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)

from idp import audit, refresh_tokens
from idp.models import User, db, utcnow
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import GrantRefused
from idp.oauth.id_token import id_token_for
from idp.registry import AUTH_METHODS
from idp.users.authentication import SignInFailure, sign_in
from idp.users.policy import (
    grantable_scopes,
    may_sign_in,
    narrow_scope,
    retained_scope,
    session_may_continue,
)

if TYPE_CHECKING:
    from idp.oauth.server import IdpAuthorizationServer

CLIENT_AUTH_METHODS = list(AUTH_METHODS)
BAD_CREDENTIALS = "invalid username or password"
REFRESH_REFUSED = "refresh token is unknown, expired or revoked"
# One metrics reason for unknown user, wrong password and locked user: metrics must not
# tell whether a username exists (the audit log, for operators, keeps the detail).
SIGN_IN_FAILURE_RULE = "bad_credentials"
MAX_USER_ID_LENGTH = 36  # user ids are UUIDs


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


class _UserTokenGrant:
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


class PasswordGrant(_UserTokenGrant, grants.ResourceOwnerPasswordCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def authenticate_user(self, username: str, password: str) -> IdpUser:
        client: OAuthClient = self.request.client
        try:
            user = sign_in(
                client.row.tenant_id,
                client.tenant_name,
                client.get_client_id(),
                username,
                password,
                self.server.runtime.settings,
            )
        except SignInFailure:
            raise GrantRefused(SIGN_IN_FAILURE_RULE, BAD_CREDENTIALS, durable=True) from None
        return IdpUser(user)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        user: User = self.request.user.row
        client: OAuthClient = self.request.client
        scope = token_scope(client, user, self.request.payload.scope)
        lifetime = self.server.runtime.lifetimes.refresh_token(client.row)
        lineage = refresh_tokens.fresh_lineage(scope, lifetime, utcnow())
        token = self.issue(user, scope, lineage)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(_UserTokenGrant, grants.RefreshTokenGrant):
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


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """RFC 6749 §4.4, and with ``sub`` a token for one of the client's own users (the
    users it created through /users): user-bound tokens for users without a password."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_token_request(self) -> None:
        # Past client authentication this grant only reads and signs, so the assertion's
        # replay check may travel while the token is made; the endpoint settles it before
        # the response leaves (idp.oauth.views).
        self.request.defer_replay_checks = True
        super().validate_token_request()

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: OAuthClient = self.request.client
        subject = self.request.form.get("sub")
        user = IdpUser(self._own_user(client, subject)) if subject is not None else None
        scope = token_scope(client, user.row if user else None, self.request.payload.scope)
        token = self.generate_token(user=user, scope=scope, include_refresh_token=False)
        self.request.user = user
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER

    @staticmethod
    def _own_user(client: OAuthClient, subject: str) -> User:
        if not subject:
            raise InvalidRequestError("'sub' must name a user")
        user = db.session.get(User, subject) if len(subject) <= MAX_USER_ID_LENGTH else None
        # One answer for every refusal: another client's user is as unknown as no user.
        if (
            user is None
            or user.client_id != client.get_client_id()
            or user.tenant_id != client.row.tenant_id
            or not may_sign_in(user, utcnow())
        ):
            raise GrantRefused("subject", "'sub' is not a user of this client that may sign in")
        return user
