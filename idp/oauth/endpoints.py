"""The OAuth endpoints: input checked in one place, then Authlib's machinery, one commit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from idp.bearer import BearerError, authenticate
from idp.errors import KeyStoreError
from idp.models import User, db
from idp.oauth.errors import MalformedRequest, TemporarilyUnavailable
from idp.oauth.request_checks import check_oauth_request
from idp.oauth.server import authorization_server
from idp.observability.metrics import TOKEN_LATENCY
from idp.stores import StoreUnavailable

blueprint = Blueprint("oauth", __name__)
logger = logging.getLogger(__name__)


def _run(handler: Callable[[], Response]) -> Response:
    """Validate, run, and commit only a success: a failed request leaves nothing behind."""
    server = authorization_server()
    try:
        check_oauth_request(request)
        response = handler()
        if response.status_code < 400:
            db.session.commit()
        else:
            db.session.rollback()
        return response
    except OAuth2Error as error:
        db.session.rollback()
        return server.handle_error_response(None, error)
    except (KeyStoreError, StoreUnavailable, SQLAlchemyError) as exc:
        db.session.rollback()
        logger.error("%s %s: %s", request.method, request.path, type(exc).__name__)
        return server.handle_error_response(
            None, TemporarilyUnavailable("a backing service is unavailable; try again later")
        )


def _token_response() -> Response:
    if not request.form.get("grant_type"):
        raise MalformedRequest("grant_type", "grant_type is required")
    return authorization_server().create_token_response()


@blueprint.post("/oidc/token")
def token() -> Response:
    started = time.perf_counter()
    response = _run(_token_response)
    TOKEN_LATENCY.observe(time.perf_counter() - started)
    return response


@blueprint.post("/oidc/revoke")
def revoke() -> Response:
    return _run(lambda: authorization_server().create_endpoint_response("revocation"))


@blueprint.post("/oidc/introspect")
def introspect() -> Response:
    return _run(lambda: authorization_server().create_endpoint_response("introspection"))


@blueprint.route("/oidc/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    try:
        token = authenticate(["openid"])
        user = db.session.get(User, token.subject) if token.is_user_token else None
        if (
            user is None
            or user.deleted_at is not None
            or user.tenant.name != token.claims.get("tenant")
        ):
            raise BearerError(401, "invalid_token", "the token names no live user")
    except BearerError as exc:
        response = jsonify({"error": exc.error or "invalid_token", "error_description": str(exc)})
        response.status_code = exc.status
        response.headers["WWW-Authenticate"] = exc.challenge
        response.headers["Cache-Control"] = "no-store"
        return response
    claims = {"sub": user.id, "preferred_username": user.username}
    if "email" in token.scopes and user.email:
        claims["email"] = user.email
    response = jsonify(claims)
    response.headers["Cache-Control"] = "no-store"
    return response
