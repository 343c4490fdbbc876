"""Liveness and readiness: ready means the database, the backends of the replay and
revocation stores, and an active key."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp.models import db
from idp.runtime import runtime
from idp.stores import ReplayStore, RevocationStore, StoreUnavailable

blueprint = Blueprint("health", __name__)
logger = logging.getLogger(__name__)

# Reported in every profile, so /readyz keeps one JSON shape; one no store uses is
# "not configured".
REPORTED_BACKENDS = ("database", "redis")


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


def _check_store(store: ReplayStore | RevocationStore) -> str | None:
    try:
        store.ping()
    except StoreUnavailable as exc:
        cause = exc.__cause__ or exc
        logger.warning("readiness: %s unreachable: %s", store.backend, type(cause).__name__)
        return f"{store.backend} unreachable"
    return None


def _check_stores(checks: dict[str, str | None]) -> None:
    """One ping per backend: stores that share one (or share the database) are checked once."""
    rt = runtime()
    for store in (rt.replay_store, rt.revocation_store):
        if store.backend not in checks:
            checks[store.backend] = _check_store(store)


def _check_keys() -> str | None:
    return None if runtime().key_ring.current().active is not None else "no active signing key"


@blueprint.get("/readyz")
def readyz() -> Response:
    checks: dict[str, str | None] = {"database": _check_database()}
    _check_stores(checks)
    checks["keys"] = _check_keys()
    failures = [reason for reason in checks.values() if reason]
    # Updating keeps the defaults' order: database, redis, keys.
    report = dict.fromkeys(REPORTED_BACKENDS, "not configured")
    report |= {name: reason or "ok" for name, reason in checks.items()}
    body: dict[str, object] = {
        "status": "unavailable" if failures else "ready",
        "checks": report,
    }
    if failures:
        body["reason"] = "; ".join(failures)
    response = jsonify(body)
    response.status_code = 503 if failures else 200
    response.headers["Cache-Control"] = "no-store"
    return response
