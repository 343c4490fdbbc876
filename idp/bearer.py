"""RFC 6750 bearer-token authentication for idp's own resources (userinfo, /users)."""

from __future__ import annotations

from collections.abc import Iterable

from flask import request

from idp.runtime import runtime
from idp.verify import AccessToken, InsufficientScope, InvalidToken


class BearerError(Exception):
    def __init__(self, status: int, error: str | None, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    @property
    def challenge(self) -> str:
        """The WWW-Authenticate value (RFC 6750 §3)."""
        if self.error is None:
            return 'Bearer realm="idp"'
        return f'Bearer realm="idp", error="{self.error}", error_description="{self.description}"'


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise BearerError(401, None, "a bearer access token is required")
    if scheme.lower() != "bearer" or not token.strip():
        raise BearerError(401, "invalid_request", "use the Authorization: Bearer scheme")
    return token.strip()


def authenticate(required_scopes: Iterable[str] = ()) -> AccessToken:
    """The verified token, or BearerError (401/403).

    VerifierUnavailable (the revocation list is down) is left to propagate: the error
    handler in idp.http_errors answers it as every other outage, 503 with Retry-After in
    the surface's format, and the token is never taken as valid unchecked.
    """
    token = bearer_token()
    try:
        return runtime().verifier.verify(token, required_scopes)
    except InvalidToken as exc:
        raise BearerError(401, "invalid_token", str(exc)) from None
    except InsufficientScope as exc:
        raise BearerError(403, "insufficient_scope", str(exc)) from None
