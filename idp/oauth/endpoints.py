"""The token endpoint: input checked in one place, then Authlib's grant machinery."""

from __future__ import annotations

import logging
import time

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, request
from sqlalchemy.exc import SQLAlchemyError

from idp.errors import KeyStoreError
from idp.models import db
from idp.oauth.errors import MalformedRequest, TemporarilyUnavailable
from idp.oauth.request_checks import check_oauth_request
from idp.oauth.server import authorization_server
from idp.observability.metrics import TOKEN_LATENCY

blueprint = Blueprint("oauth", __name__)
logger = logging.getLogger(__name__)


@blueprint.post("/oidc/token")
def token() -> Response:
    started = time.perf_counter()
    server = authorization_server()
    try:
        check_oauth_request(request)
        if not request.form.get("grant_type"):
            raise MalformedRequest("grant_type", "grant_type is required")
        response = server.create_token_response()
    except OAuth2Error as error:
        response = server.handle_error_response(None, error)
    except KeyStoreError as exc:
        logger.error("token endpoint: %s", exc)
        response = server.handle_error_response(
            None, TemporarilyUnavailable("no signing key available; try again later")
        )
    except SQLAlchemyError as exc:
        db.session.rollback()
        logger.error("token endpoint: database error %s", type(exc).__name__)
        response = server.handle_error_response(
            None, TemporarilyUnavailable("database unreachable; try again later")
        )
    TOKEN_LATENCY.observe(time.perf_counter() - started)
    return response
