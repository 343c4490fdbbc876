"""A broken key store never empties a worker: one that loaded good keys keeps them, one
that never did answers 503 and is not ready (never an empty JWKS with 200)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from idp.app import create_app
from idp.keys import ring
from idp.models import db
from idp.runtime import runtime
from idp.settings import load_settings
from tests.oauth.helpers import basic, register


@pytest.fixture(autouse=True)
def check_every_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # Workers look at the store at most once a second; here every request looks.
    monkeypatch.setattr(ring, "CHECK_INTERVAL", 0.0)


def _manifest(app: Flask) -> Path:
    return Path(runtime(app).settings.keys_dir) / "manifest.json"


@pytest.fixture
def fresh_worker(idp_env: dict[str, str]) -> Iterator[Any]:
    """A second app on the same database and key folder: a worker (re)started now."""
    started: list[Flask] = []

    def start() -> Flask:
        worker = create_app(load_settings(idp_env))
        worker.config["TESTING"] = True
        started.append(worker)
        return worker

    yield start
    for worker in started:
        with worker.app_context():
            db.session.remove()
            db.engine.dispose()


def _token_status(app: Flask, client_id: str, secret: str) -> int:
    response = app.test_client().post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )
    return response.status_code


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no active key", "missing key file"])
def test_a_worker_started_on_a_broken_store_is_unavailable_not_empty(
    app: Flask, fresh_worker: Any, damage: str
) -> None:
    client_id, secret = register(app, auth_method="client_secret_basic")
    manifest = _manifest(app)
    if damage == "truncated":
        manifest.write_bytes(manifest.read_bytes()[:40])
    elif damage == "garbage":
        manifest.write_text("garbage")
    elif damage == "no active key":
        manifest.write_text(manifest.read_text().replace('"active"', '"retired"'))
    else:
        for record in runtime(app).key_store.records():
            if record.state == "active":
                (manifest.parent / f"{record.kid}.json").unlink()

    worker = fresh_worker()
    http = worker.test_client()
    jwks = http.get("/oidc/jwks")
    assert jwks.status_code == 503
    assert jwks.headers["Cache-Control"] == "no-store" and "Retry-After" in jwks.headers
    assert jwks.get_json()["error"] == "temporarily_unavailable"
    ready = http.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["keys"] == "no active signing key"
    token = http.post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )
    assert token.status_code == 503
    assert token.get_json()["error"] == "temporarily_unavailable"


def test_a_worker_without_any_store_is_unavailable(app: Flask, fresh_worker: Any) -> None:
    _manifest(app).unlink()
    http = fresh_worker().test_client()
    assert http.get("/oidc/jwks").status_code == 503
    assert http.get("/readyz").status_code == 503


@pytest.mark.parametrize("damage", ["truncate", "delete", "remove active"])
def test_a_worker_with_good_keys_keeps_them_and_follows_the_repaired_store(
    app: Flask, damage: str
) -> None:
    client_id, secret = register(app, auth_method="client_secret_basic")
    http = app.test_client()
    good = http.get("/oidc/jwks")
    assert good.status_code == 200 and len(good.get_json()["keys"]) == 2
    manifest = _manifest(app)
    saved = manifest.read_bytes()
    if damage == "truncate":
        manifest.write_bytes(saved[:40])
    elif damage == "delete":
        manifest.unlink()
    else:
        manifest.write_text(saved.decode().replace('"active"', '"retired"'))

    for _ in range(3):
        kept = http.get("/oidc/jwks")
        assert kept.status_code == 200 and kept.data == good.data
        assert kept.headers["ETag"] == good.headers["ETag"]
        assert http.get("/readyz").status_code == 200
        assert _token_status(app, client_id, secret) == 200

    manifest.write_bytes(saved)
    store = runtime(app).key_store
    rotated = store.rotate("ES256", min_next_age=0)
    assert rotated.promoted is not None
    after = http.get("/oidc/jwks")
    assert after.status_code == 200 and after.data != good.data
    assert after.get_json()["keys"][0]["kid"] == rotated.promoted.kid


def test_a_failed_reload_is_logged_once_without_key_material(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    http = app.test_client()
    assert http.get("/oidc/jwks").status_code == 200
    manifest = _manifest(app)
    manifest.write_text("garbage")
    with caplog.at_level("ERROR", logger="idp.keys.ring"):
        for _ in range(5):
            assert http.get("/oidc/jwks").status_code == 200
    failures = [r for r in caplog.records if "reload failed" in r.getMessage()]
    assert len(failures) == 1
    assert "keeping the last good keys" in failures[0].getMessage()
    for key_file in manifest.parent.glob("*.json"):
        if key_file != manifest:
            assert json.loads(key_file.read_text())["d"] not in caplog.text


def test_running_servers_keep_their_keys_and_a_restarted_one_is_not_ready(
    app: Flask, idp_env: dict[str, str], live_server: Any
) -> None:
    # One worker: with two, the second may still be booting when the manifest breaks, and
    # then it is a worker started on a broken store (unavailable, as the other server).
    running = live_server(idp_env, workers=1)
    before = requests.get(f"{running}/oidc/jwks", timeout=10)
    assert before.status_code == 200
    manifest = _manifest(app)
    manifest.write_bytes(manifest.read_bytes()[:40])

    restarted = live_server(idp_env, workers=1)
    jwks = requests.get(f"{restarted}/oidc/jwks", timeout=10)
    assert jwks.status_code == 503 and jwks.headers["Cache-Control"] == "no-store"
    assert requests.get(f"{restarted}/readyz", timeout=10).status_code == 503
    # The running worker passes its one-second check and still serves what it had.
    time.sleep(1.5)
    for _ in range(6):
        kept = requests.get(f"{running}/oidc/jwks", timeout=10)
        assert kept.status_code == 200 and kept.content == before.content
    assert requests.get(f"{running}/readyz", timeout=10).status_code == 200
    manifest.unlink()
    time.sleep(1.5)
    for _ in range(6):
        assert requests.get(f"{running}/oidc/jwks", timeout=10).content == before.content
