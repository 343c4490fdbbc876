"""RFC 6750 bearer-token authentication for idp's own resources (userinfo, /users, /metrics),
and the one place that builds their error responses."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from flask import Response, jsonify, request

from idp.text import safe_description
from idp.verify import AccessToken, InsufficientScope, InvalidToken, TokenVerifier
from idp.web.problems import problem_response


class BearerError(Exception):
    def __init__(self, status: int, error: str | None, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    @property
    def challenge(self) -> str:
        """The WWW-Authenticate value (RFC 6750 §3).

        Without an error code when the request carried no credentials (RFC 6750 §3.1).
        """
        if self.error is None:
            return 'Bearer realm="idp"'
        description = safe_description(self.description)
        return f'Bearer realm="idp", error="{self.error}", error_description="{description}"'


def bearer_error_response(exc: BearerError, *, problem: bool) -> Response:
    """The answer to a refused bearer request, in the surface's error format.

    ``problem``: RFC 9457 problem+json (the /users API); otherwise the RFC 6749 §5.2 JSON
    shape of idp's other endpoints, with ``invalid_token`` when the request carried no
    credentials. 401 and 403 carry the challenge (RFC 6750 §3); nothing is cached.
    """
    if problem:
        response = problem_response(exc.status, HTTPStatus(exc.status).phrase, exc.description)
    else:
        body = {"error": exc.error or "invalid_token", "error_description": exc.description}
        response = jsonify(body)
        response.status_code = exc.status
    if exc.status in (401, 403):
        response.headers["WWW-Authenticate"] = exc.challenge
    response.headers["Cache-Control"] = "no-store"
    return response


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise BearerError(401, None, "a bearer access token is required")
    if scheme.lower() != "bearer" or not token.strip():
        raise BearerError(401, "invalid_request", "use the Authorization: Bearer scheme")
    return token.strip()


def authenticate(verifier: TokenVerifier, required_scopes: Iterable[str] = ()) -> AccessToken:
    """The verified token, or BearerError (401/403).

    VerifierUnavailable (the revocation list is down) is left to propagate: the error
    handler in idp.web.errors answers it as every other outage, 503 with Retry-After in
    the surface's format, and the token is never taken as valid unchecked.
    """
    token = bearer_token()
    try:
        return verifier.verify(token, required_scopes)
    except InvalidToken as exc:
        raise BearerError(401, "invalid_token", str(exc)) from None
    except InsufficientScope as exc:
        raise BearerError(403, "insufficient_scope", str(exc)) from None
