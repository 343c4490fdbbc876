"""Prometheus metrics. Under gunicorn, ``idp serve`` sets PROMETHEUS_MULTIPROC_DIR so every
worker writes its samples to files and ``/metrics`` adds them up across workers."""

from __future__ import annotations

import os

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

blueprint = Blueprint("metrics", __name__)

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


@blueprint.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)
