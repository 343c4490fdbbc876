"""The OAuth endpoints: input checked in one place, then Authlib's machinery, one commit."""

from __future__ import annotations

import time
from collections.abc import Callable

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, g, jsonify, request

from idp.errors import KeyStoreError
from idp.models import User, db
from idp.oauth.errors import MalformedRequest, TemporarilyUnavailable
from idp.oauth.request_checks import CheckedRequest, check_oauth_request
from idp.oauth.server import DURABLE_FAILURE, IdpAuthorizationServer, authorization_server
from idp.observability.metrics import TOKEN_FAILURES, TOKEN_LATENCY, TOKENS_ISSUED
from idp.users.policy import is_live
from idp.web.bearer import BearerError, authenticate, bearer_error_response
from idp.web.errors import (
    UNAVAILABLE_DESCRIPTION,
    UNAVAILABLE_ERRORS,
    is_unavailable,
    retry_later,
    unavailable_response,
)

blueprint = Blueprint("oauth", __name__)


def _run(
    server: IdpAuthorizationServer,
    handler: Callable[[CheckedRequest], Response],
    json_bodies: bool = False,
    on_success: Callable[[CheckedRequest], None] | None = None,
) -> Response:
    """Validate, run, and commit once: a success, or a refusal that must be remembered
    (a counted bad password, a revoked family); any other failure leaves nothing behind.
    ``on_success`` runs once a success is settled and committed."""
    try:
        # The request object itself, not Flask's proxy: read a dozen times per request.
        real_request = request._get_current_object()  # type: ignore[attr-defined]
        checked = check_oauth_request(real_request, json_bodies)
        try:
            response = handler(checked)
            if response.status_code < 400:
                # The one place replay checks deferred while the token was made are
                # answered: none may be left unread when a response leaves, and a
                # replay turns the success into a refusal before anything is committed
                # (idp.oauth.assertions.DeferredClaims).
                checked.deferred.settle()
        finally:
            checked.deferred.discard()
        if not _in_transaction():
            pass  # nothing was read or written: no round trip to the database
        elif response.status_code < 400 or g.get(DURABLE_FAILURE, False):
            db.session.commit()
        else:
            db.session.rollback()
        if on_success is not None and response.status_code < 400:
            on_success(checked)
        if response.status_code == 503:
            # Authlib caught a TemporarilyUnavailable (a store failed inside its flow) and
            # answered it in RFC 6749 form, counted in metrics; only the retry hint is missing.
            retry_later(response)
        return response
    except OAuth2Error as error:
        response = server.handle_error_response(None, error)
        if g.get(DURABLE_FAILURE, False):
            db.session.commit()
        else:
            db.session.rollback()
        return retry_later(response) if response.status_code == 503 else response
    except KeyStoreError as exc:
        return _unavailable(exc, "no signing key is available; try again later")
    except UNAVAILABLE_ERRORS as exc:
        if not is_unavailable(exc):
            raise  # a bug, not an outage: the app's handler answers 500
        return _unavailable(exc)


def _in_transaction() -> bool:
    # Asked without creating a session: the client_credentials hot path never opens one.
    return db.session.registry.has() and db.session().in_transaction()


def _unavailable(exc: Exception, description: str = UNAVAILABLE_DESCRIPTION) -> Response:
    """Counted as a refused request like any OAuth error; the 503 itself (body, no-store,
    Retry-After) comes from the app-wide helper so every surface answers outages alike."""
    TOKEN_FAILURES.labels(TemporarilyUnavailable.error, "store_unavailable").inc()
    return unavailable_response(exc, description)


@blueprint.post("/oidc/token")
def token() -> Response:
    started = time.perf_counter()
    server = authorization_server()

    def respond(checked: CheckedRequest) -> Response:
        if not checked.params.get("grant_type"):
            raise MalformedRequest("grant_type", "grant_type is required")
        return server.create_token_response(checked)

    response = _run(server, respond, server.runtime.settings.token_json_bodies, _count_issued)
    TOKEN_LATENCY.observe(time.perf_counter() - started)
    return response


def _count_issued(checked: CheckedRequest) -> None:
    # Every token response authenticated its client with the method the request presents.
    TOKENS_ISSUED.labels(checked.params["grant_type"], checked.presented.method).inc()


@blueprint.post("/oidc/revoke")
def revoke() -> Response:
    server = authorization_server()
    return _run(server, lambda checked: server.create_endpoint_response("revocation", checked))


@blueprint.post("/oidc/introspect")
def introspect() -> Response:
    server = authorization_server()
    return _run(server, lambda checked: server.create_endpoint_response("introspection", checked))


@blueprint.route("/oidc/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OIDC Core §5.3. A database or revocation-list outage is not caught here: it reaches
    idp.web.errors, which answers 503 temporarily_unavailable with Retry-After."""
    try:
        token = authenticate(authorization_server().runtime.verifier, ["openid"])
        user = db.session.get(User, token.subject) if token.is_user_token else None
        if not is_live(user) or user.tenant.name != token.claims.get("tenant"):
            raise BearerError(401, "invalid_token", "the token names no live user")
    except BearerError as exc:
        return bearer_error_response(exc, problem=False)
    claims = {"sub": user.id, "preferred_username": user.username}
    if "email" in token.scopes and user.email:
        claims["email"] = user.email
    response = jsonify(claims)
    response.headers["Cache-Control"] = "no-store"
    return response
