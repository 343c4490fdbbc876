"""The resource owner password grant (RFC 6749 §4.3): one answer for every bad credential."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import grants

from idp.models import User, utcnow
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import GrantRefused
from idp.oauth.grants.base import CLIENT_AUTH_METHODS, IdpUser, UserTokenGrant, token_scope
from idp.tokens import refresh_tokens
from idp.users.authentication import SignInFailure, sign_in

BAD_CREDENTIALS = "invalid username or password"
# One metrics reason for unknown user, wrong password and locked user: metrics must not
# tell whether a username exists (the audit log, for operators, keeps the detail).
SIGN_IN_FAILURE_RULE = "bad_credentials"


class PasswordGrant(UserTokenGrant, grants.ResourceOwnerPasswordCredentialsGrant):
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
