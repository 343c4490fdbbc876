"""Find what a presented token is (a JWT access token or a stored refresh token) for the
revocation and introspection endpoints, as objects Authlib's endpoints can ask about."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from idp.models import RefreshToken, User, db, utcnow
from idp.oauth.clients import OAuthClient
from idp.oauth.errors import TemporarilyUnavailable
from idp.tokens import refresh_tokens
from idp.users.policy import session_may_continue
from idp.verify import AccessToken, InvalidToken, TokenVerifier, VerifierUnavailable


class PresentedAccessToken:
    def __init__(self, token: AccessToken) -> None:
        self.token = token
        self.claims = token.claims

    @property
    def tenant(self) -> str | None:
        return self.claims.get("tenant")

    def check_client(self, client: OAuthClient) -> bool:
        return self.claims.get("client_id") == client.get_client_id()

    def is_expired(self) -> bool:
        return self.claims["exp"] <= time.time()

    def is_revoked(self) -> bool:
        return False  # the verifier already refused revoked tokens


class PresentedRefreshToken:
    def __init__(self, row: RefreshToken) -> None:
        self.row = row

    @property
    def user(self) -> User | None:
        return db.session.get(User, self.row.user_id)

    @property
    def tenant(self) -> str | None:
        user = self.user
        return user.tenant.name if user else None

    def check_client(self, client: OAuthClient) -> bool:
        return self.row.client_id == client.get_client_id()

    def is_expired(self) -> bool:
        return self.row.expires_at is not None and self.row.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        if self.row.revoked_at is not None or self.row.used_at is not None:
            return True
        return not session_may_continue(self.user, self.row.auth_time)


def find_access_token(token: str, verifier: TokenVerifier) -> PresentedAccessToken | None:
    try:
        return PresentedAccessToken(verifier.verify(token))
    except InvalidToken:
        return None
    except VerifierUnavailable as exc:
        raise TemporarilyUnavailable("revocation list unreachable; try again later") from exc


def find_token(token: str, hint: str | None, verifier: TokenVerifier) -> Any:
    """The access or refresh token ``token`` is, trying the likelier kind first."""
    if not token or len(token) > 8192:
        return None
    looks_like_jwt = token.count(".") == 2
    finders: list[Callable[[], Any]] = [
        lambda: find_access_token(token, verifier),
        lambda: _find_refresh_token(token),
    ]
    if hint == "refresh_token" or not looks_like_jwt:
        finders.reverse()
    for finder in finders:
        found = finder()
        if found is not None:
            return found
    return None


def _find_refresh_token(token: str) -> PresentedRefreshToken | None:
    row = refresh_tokens.find(token)
    return PresentedRefreshToken(row) if row is not None else None
