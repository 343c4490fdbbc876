"""One error format per surface: RFC 6749 JSON for OAuth, RFC 9457 problem+json for the
blueprints that declare it (the JSON API and its OpenAPI document).

The blueprint that owns the matched route decides. A URL that matches no route (a 404, or
a 405 for a method the route lacks) has no blueprint: it takes the format of the declared
blueprints whose routes share its first path segment (``/users`` for ``/users/x/y``)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import redis.exceptions
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from idp.models import db
from idp.stores import StoreUnavailable
from idp.verify import VerifierUnavailable
from idp.web.problems import problem_response

logger = logging.getLogger(__name__)

# Seconds a client should wait before retrying after a 503 (RFC 9110 §10.2.3): long enough
# for a database fail-over or a Redis restart, short enough not to stall a login.
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_DESCRIPTION = "a backing service is unavailable; try again later"
# What a lost database or Redis connection raises. DBAPIError is listed whole so that the
# handler sees every driver error, and is_unavailable() decides which of them are outages.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    PoolTimeout,  # every pooled connection is stuck on an unreachable database
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    StoreUnavailable,
    VerifierUnavailable,
)

_OAUTH_CODES = {400: "invalid_request", 401: "invalid_client", 413: "invalid_request"}
PROBLEM_SURFACES = "idp.problem_surfaces"


@dataclass(frozen=True)
class ProblemSurfaces:
    blueprints: frozenset[str]
    segments: frozenset[str]  # the first path segments of their routes


def _first_segment(path: str) -> str:
    return "/" + path.lstrip("/").split("/", 1)[0]


def _wants_problem() -> bool:
    surfaces: ProblemSurfaces = current_app.extensions[PROBLEM_SURFACES]
    if request.url_rule is not None:
        return request.blueprint in surfaces.blueprints
    return _first_segment(request.path) in surfaces.segments


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


def is_unavailable(exc: BaseException) -> bool:
    """True for a database or Redis that cannot be reached, not for a bug or bad data."""
    if isinstance(exc, DBAPIError):
        # A constraint or syntax error is the request's or the code's fault: that stays 500.
        return isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated
    return isinstance(exc, UNAVAILABLE_ERRORS)


def unavailable_response(exc: Exception, description: str = UNAVAILABLE_DESCRIPTION) -> Response:
    """503 in the surface's format with Retry-After; the one place that builds it."""
    # The session may hold a failed transaction; the next request on this worker needs it clean.
    with contextlib.suppress(SQLAlchemyError):
        db.session.rollback()
    # The class name only: driver messages can carry host names and bound values.
    logger.warning("%s %s: unavailable: %s", request.method, request.path, type(exc).__name__)
    if _wants_problem():
        response = problem_response(503, "Service Unavailable", description)
    else:
        response = jsonify({"error": "temporarily_unavailable", "error_description": description})
        response.status_code = 503
    return retry_later(response)


def retry_later(response: Response) -> Response:
    """The headers every 503 of idp carries: never cached, and when to try again."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _storage_error(exc: Exception) -> Response:
    return unavailable_response(exc) if is_unavailable(exc) else _unexpected(exc)


def register(app: Flask, problem_blueprints: tuple[Blueprint, ...]) -> None:
    """The error handlers; ``problem_blueprints`` (registered already) answer in RFC 9457."""
    names = frozenset(blueprint.name for blueprint in problem_blueprints)
    segments = frozenset(
        _first_segment(rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.partition(".")[0] in names
    )
    app.extensions[PROBLEM_SURFACES] = ProblemSurfaces(names, segments)
    app.register_error_handler(HTTPException, error_response)
    for error_class in UNAVAILABLE_ERRORS:
        app.register_error_handler(error_class, _storage_error)
    app.register_error_handler(Exception, _unexpected)
