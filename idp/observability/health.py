"""Liveness and readiness: ready means the database, the backends of the replay and
revocation stores, and an active key."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from idp.models import db
from idp.stores import ReplayStore, RevocationStore, StoreUnavailable

logger = logging.getLogger(__name__)

# Reported in every profile, so /readyz keeps one JSON shape; one no store uses is
# "not configured".
REPORTED_BACKENDS = ("database", "redis")
NO_ACTIVE_KEY = "no active signing key"


def create_blueprint(
    stores: tuple[ReplayStore, RevocationStore], has_active_key: Callable[[], bool]
) -> Blueprint:
    """``/healthz``, and ``/readyz`` over the database, the app's stores and its key ring
    (``has_active_key``)."""
    blueprint = Blueprint("health", __name__)

    @blueprint.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @blueprint.get("/readyz")
    def readyz() -> Response:
        checks: dict[str, str | None] = {"database": _check_database()}
        _check_stores(stores, checks)
        checks["keys"] = None if has_active_key() else NO_ACTIVE_KEY
        return _readiness(checks)

    return blueprint


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


def _check_stores(
    stores: tuple[ReplayStore, RevocationStore], checks: dict[str, str | None]
) -> None:
    """One ping per backend: stores that share one (or share the database) are checked once."""
    for store in stores:
        if store.backend not in checks:
            checks[store.backend] = _check_store(store)


def _readiness(checks: dict[str, str | None]) -> Response:
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
