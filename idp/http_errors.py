"""One error format per surface: RFC 6749 JSON for OAuth, RFC 9457 problem+json for /users."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from idp.json_api import problem_response

logger = logging.getLogger(__name__)

PROBLEM_PREFIXES = ("/users", "/openapi")
_OAUTH_CODES = {400: "invalid_request", 401: "invalid_client", 413: "invalid_request"}


def _wants_problem() -> bool:
    return request.path.startswith(PROBLEM_PREFIXES)


def error_response(exc: HTTPException) -> Response:
    status = exc.code or 500
    description = exc.description or ""
    if isinstance(exc, RequestEntityTooLarge):
        description = "request body is larger than IDP_MAX_BODY allows"
    if _wants_problem():
        response = problem_response(status, exc.name, description)
    else:
        code = _OAUTH_CODES.get(status) or exc.name.lower().replace(" ", "_")
        response = jsonify({"error": code, "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(InternalServerError())


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, error_response)
    app.register_error_handler(Exception, _unexpected)
