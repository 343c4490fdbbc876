from __future__ import annotations

import json
import shutil

from flask import Flask
from flask.testing import FlaskClient

from idp.app import create_app
from idp.keys import KeyStore
from idp.models import db
from idp.runtime import runtime
from idp.settings import load_settings


def test_healthz_is_ok(http: FlaskClient) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_is_ready_with_database_redis_and_an_active_key(http: FlaskClient, profile) -> None:
    response = http.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok" and body["checks"]["keys"] == "ok"
    assert body["checks"]["redis"] == ("ok" if profile == "production" else "not configured")


def test_readyz_fails_when_redis_is_down(make_app, stoppable_redis) -> None:
    http = make_app(IDP_REDIS_URL=stoppable_redis.url(0)).test_client()
    assert http.get("/readyz").status_code == 200
    stoppable_redis.stop()
    response = http.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"] == "redis unreachable"
    assert "redis unreachable" in body["reason"]


def _bare_app(idp_env: dict[str, str], database_url: str) -> Flask:
    app = create_app(load_settings(idp_env | {"IDP_DATABASE_URL": database_url}))
    with app.app_context():
        runtime(app).key_store.initialise("ES256")
    return app


def test_readyz_fails_when_the_database_is_down(idp_env, profile, request, tmp_path):
    if profile == "production":
        stoppable_postgres = request.getfixturevalue("stoppable_postgres")
        stoppable_postgres.create_database("readyz")
        app = _bare_app(idp_env, stoppable_postgres.url("readyz"))
        stop = stoppable_postgres.stop
    else:
        folder = tmp_path / "db"
        folder.mkdir()
        app = _bare_app(idp_env, f"sqlite:///{folder / 'idp.sqlite3'}")

        def stop() -> None:
            shutil.rmtree(folder)
            with app.app_context():
                db.engine.dispose()

    http = app.test_client()
    assert http.get("/readyz").status_code == 200
    stop()
    response = http.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["database"] == "database unreachable"
    assert body["status"] == "unavailable"
    assert "database unreachable" in body["reason"]


def test_readyz_fails_without_an_active_key(app, http: FlaskClient) -> None:
    store = KeyStore(app.extensions["idp"].key_store.directory)
    manifest = json.loads(store.manifest_path.read_text())
    for key in manifest["keys"]:
        key["state"] = "retired" if key["state"] == "active" else key["state"]
    store.manifest_path.write_text(json.dumps(manifest))
    app.extensions["idp"].key_ring._checked_at = float("-inf")
    response = http.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["keys"] == "no active signing key"
