"""Prometheus metrics. Under gunicorn, ``idp serve`` sets PROMETHEUS_MULTIPROC_DIR so every
worker writes its samples to files and ``/metrics`` adds them up across workers."""

from __future__ import annotations

import hmac
import os

from flask import Blueprint, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from idp.web.bearer import BearerError, bearer_error_response

TOKENS_ISSUED = Counter(
    "idp_tokens_issued",
    "Access tokens issued at the token endpoint.",
    ["grant_type", "auth_method"],
)
TOKEN_FAILURES = Counter(
    "idp_token_failures",
    "Token endpoint requests refused, by OAuth error code and the rule that failed.",
    ["error", "rule"],
)
TOKEN_LATENCY = Histogram(
    "idp_token_request_seconds",
    "Time spent answering POST /oidc/token.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def _authorized(expected: str) -> bool:
    """The request carries ``Authorization: Bearer <expected>`` (RFC 6750 §2.1)."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time, so the response time does not reveal how much of a guess was right.
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def _unauthorized() -> Response:
    # No error code in the challenge, whatever was sent: a wrong guess learns nothing more
    # than a missing header (RFC 6750 §3.1 leaves the code out when credentials are absent).
    description = "GET /metrics needs Authorization: Bearer <IDP_METRICS_TOKEN>"
    return bearer_error_response(BearerError(401, None, description), problem=False)


def create_blueprint(metrics_token: str | None) -> Blueprint:
    """``/metrics``, behind ``IDP_METRICS_TOKEN`` when one is set."""
    blueprint = Blueprint("metrics", __name__)

    @blueprint.get("/metrics")
    def metrics() -> Response:
        if metrics_token is not None and not _authorized(metrics_token):
            return _unauthorized()
        return Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)

    return blueprint
