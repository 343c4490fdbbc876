"""Liveness and readiness: ready means database, Redis (when configured) and an active key."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp.models import db
from idp.runtime import runtime

blueprint = Blueprint("health", __name__)
logger = logging.getLogger(__name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def _check_database() -> str | None:
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        logger.warning("readiness: database unreachable: %s", type(exc).__name__)
        db.session.rollback()
        return "database unreachable"
    return None


def _check_redis() -> str | None:
    client = runtime().redis
    if client is None:
        return None
    try:
        client.ping()
    except redis.RedisError as exc:
        logger.warning("readiness: redis unreachable: %s", type(exc).__name__)
        return "redis unreachable"
    return None


def _check_keys() -> str | None:
    return None if runtime().key_ring.current().active is not None else "no active signing key"


@blueprint.get("/readyz")
def readyz() -> Response:
    checks = {"database": _check_database(), "redis": _check_redis(), "keys": _check_keys()}
    failures = [reason for reason in checks.values() if reason]
    body = {
        "status": "unavailable" if failures else "ready",
        "checks": {name: reason or "ok" for name, reason in checks.items()},
    }
    if runtime().redis is None:
        body["checks"]["redis"] = "not configured"
    if failures:
        body["reason"] = "; ".join(failures)
    response = jsonify(body)
    response.status_code = 503 if failures else 200
    response.headers["Cache-Control"] = "no-store"
    return response
