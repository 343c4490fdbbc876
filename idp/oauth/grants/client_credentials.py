"""The client credentials grant (RFC 6749 §4.4), and with ``sub`` a token for one of the
client's own users."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError, grants

from idp.models import User, db, utcnow
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import GrantRefused
from idp.oauth.grants.base import CLIENT_AUTH_METHODS, IdpUser, token_scope
from idp.users.policy import may_sign_in

MAX_USER_ID_LENGTH = 36  # user ids are UUIDs


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
