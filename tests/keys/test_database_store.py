"""The database key store: the same rules as the file store, keys sealed at rest, one
lock for concurrent operators, and workers that follow a change through the version."""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import select, update

from idp.errors import ConfigurationError, KeyStoreError
from idp.keys import FileKeyStore, ring
from idp.keys.database import DatabaseKeyStore
from idp.keys.ring import KeyRing
from idp.keys.sealing import KeySealer
from idp.models import SigningKey, db
from idp.runtime import runtime
from idp.settings import load_settings, parse_kek
from tests.keys import DB_KEYS, KEK

MAX_AGE = 300


def states(store: Any) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {"next": [], "active": [], "retired": []}
    for record in store.records():
        result[record.state].append(record.kid)
    return result


@pytest.fixture
def db_app(make_app: Any) -> Flask:
    return make_app(**DB_KEYS)


@pytest.fixture
def store(db_app: Flask) -> DatabaseKeyStore:
    key_store = runtime(db_app).key_store
    assert isinstance(key_store, DatabaseKeyStore)
    return key_store


def _wipe(store: DatabaseKeyStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(SigningKey.__table__.delete())


def test_init_stores_one_active_and_one_next_key_sealed(store: DatabaseKeyStore) -> None:
    records = store.records()
    assert sorted(r.state for r in records) == ["active", "next"]
    assert store.initialise("ES256") == records
    with store.engine.connect() as connection:
        rows = connection.execute(select(SigningKey.kid, SigningKey.sealed_jwk)).all()
    for kid, sealed in rows:
        jwk = store.private_jwk(kid)
        assert jwk["kid"] == kid and "d" in jwk
        assert jwk["d"].encode() not in sealed and b'"d"' not in sealed


def test_rules_match_the_file_store(store: DatabaseKeyStore) -> None:
    _wipe(store)
    with freeze_time("2026-01-01 00:00:00"):
        store.initialise("ES256")
    oldest = states(store)["next"][0]
    with freeze_time("2026-01-01 00:10:00"):
        younger = store.generate("EdDSA")
    assert len(states(store)["next"]) == 2
    with freeze_time("2026-01-01 00:10:01"):
        young = store.rotate("ES256", min_next_age=MAX_AGE, older_than=90 * 86400)
    assert not young.rotated
    with freeze_time("2026-01-01 00:14:59"), pytest.raises(KeyStoreError, match="--force"):
        store.rotate("ES256", min_next_age=1000)
    with freeze_time("2026-04-01 00:00:01"):
        old = store.rotate("ES256", min_next_age=MAX_AGE, older_than=90 * 86400)
    assert old.rotated and old.promoted is not None and old.promoted.kid == oldest
    assert states(store)["next"] == [younger.kid] and old.created == []
    with freeze_time("2026-04-01 00:00:02"):
        again = store.rotate("ES256", min_next_age=MAX_AGE)
    assert states(store)["active"] == [younger.kid] and len(again.created) == 1
    assert len(states(store)["retired"]) == 2
    with freeze_time("2026-04-01 01:00:00"):
        pruned = store.prune(min_retired_age=3630)
        assert pruned.removed == [] and len(pruned.kept_young) == 2
        forced = store.prune(min_retired_age=3630, force=True)
    assert len(forced.removed) == 2 and states(store)["retired"] == []


def test_a_refused_change_writes_nothing_and_leaves_the_version(store: DatabaseKeyStore) -> None:
    version = store.change_marker()
    before = store.records()
    with pytest.raises(KeyStoreError):
        store.rotate("ES256", min_next_age=MAX_AGE)
    assert store.records() == before and store.change_marker() == version
    assert not store.rotate("ES256", min_next_age=0, older_than=86400).rotated
    assert store.change_marker() == version
    store.generate("ES256")
    assert store.change_marker() != version


def test_another_kek_or_a_moved_key_is_a_clear_error(store: DatabaseKeyStore) -> None:
    kid = store.records()[0].kid
    other = DatabaseKeyStore(store.engine, KeySealer(secrets.token_bytes(32)))
    with pytest.raises(KeyStoreError, match="another IDP_KEYS_ENCRYPTION_KEY"):
        other.private_jwk(kid)
    first, second = store.records()
    with store.engine.begin() as connection:
        sealed = connection.scalar(
            select(SigningKey.sealed_jwk).where(SigningKey.kid == second.kid)
        )
        connection.execute(
            update(SigningKey).where(SigningKey.kid == first.kid).values(sealed_jwk=sealed)
        )
    with pytest.raises(KeyStoreError, match="integrity"):
        store.private_jwk(first.kid)


def test_a_worker_follows_a_rotation_by_another_instance(
    db_app: Flask, make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ring, "CHECK_INTERVAL", 0.0)
    other_instance = make_app(**DB_KEYS)
    http = db_app.test_client()
    before = http.get("/oidc/jwks")
    assert before.status_code == 200
    result = runtime(other_instance).key_store.rotate("ES256", min_next_age=0)
    after = http.get("/oidc/jwks")
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    assert result.promoted is not None
    assert runtime(db_app).key_ring.current().active.kid == result.promoted.kid  # type: ignore[union-attr]


def test_a_worker_keeps_its_keys_when_the_database_store_breaks(
    db_app: Flask, store: DatabaseKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ring, "CHECK_INTERVAL", 0.0)
    key_ring = runtime(db_app).key_ring
    good = key_ring.current()
    assert good.active is not None
    with store.engine.begin() as connection:
        connection.execute(update(SigningKey).values(kek_id="0" * 16))
    store.generate("ES256")  # moves the version: the worker reloads and fails
    assert key_ring.current() is good
    _wipe(store)
    store.generate("ES256")
    assert key_ring.current() is good  # no active key: not a set to serve
    fresh = KeyRing(store)
    assert fresh.current().active is None


def _rotate_many(store: DatabaseKeyStore, rounds: int, errors: list[BaseException]) -> None:
    try:
        for _ in range(rounds):
            store.rotate("ES256", min_next_age=0)
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_racing_rotations_never_leave_two_active_keys(store: DatabaseKeyStore) -> None:
    errors: list[BaseException] = []
    # One store (and engine) per operator, as separate `idp keys rotate` processes have.
    stores = [DatabaseKeyStore(store.engine, store.sealer) for _ in range(3)]
    threads = [threading.Thread(target=_rotate_many, args=(s, 5, errors)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    final = states(store)
    assert len(final["active"]) == 1 and len(final["next"]) == 1
    assert len(final["retired"]) == 15  # every rotation happened exactly once


def test_settings_refuse_the_database_store_without_a_valid_kek(idp_env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as missing:
        load_settings(idp_env | {"IDP_KEY_STORE": "database"})
    assert "IDP_KEYS_ENCRYPTION_KEY" in str(missing.value) and "\n" not in str(missing.value)
    short = secrets.token_urlsafe(16)
    with pytest.raises(ConfigurationError, match="decodes to 16 bytes") as bad:
        load_settings(idp_env | DB_KEYS | {"IDP_KEYS_ENCRYPTION_KEY": short})
    assert short not in str(bad.value)
    with pytest.raises(ConfigurationError, match="not base64url"):
        load_settings(idp_env | DB_KEYS | {"IDP_KEYS_ENCRYPTION_KEY": "not a key!"})
    with pytest.raises(ConfigurationError, match="must be one of file, database"):
        load_settings(idp_env | {"IDP_KEY_STORE": "vault"})
    settings = load_settings(idp_env | DB_KEYS)
    assert KEK not in repr(settings)
    assert len(parse_kek("k", KEK + "=")) == 32  # padding is optional


def test_serve_refuses_to_start_without_the_kek(run_idp: Any) -> None:
    result = run_idp("serve", "--port", "1", env={"IDP_KEY_STORE": "database"})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "IDP_KEYS_ENCRYPTION_KEY" in lines[0]


def run_json(run_idp: Any, *args: str, env: dict[str, str] | None = None) -> Any:
    result = run_idp(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_keys_commands_on_the_database_store(db_app: Flask, store: DatabaseKeyStore, run_idp):
    listed = run_json(run_idp, "keys", "list", env=DB_KEYS)
    assert [k["kid"] for k in listed] == [r.kid for r in store.records()]
    generated = run_json(run_idp, "keys", "generate", env=DB_KEYS)
    assert generated["state"] == "next"
    skipped = run_json(run_idp, "keys", "rotate", "--if-older-than", "1d", env=DB_KEYS)
    assert sorted(k["state"] for k in skipped) == ["active", "next", "next"]
    rotated = run_json(run_idp, "keys", "rotate", "--force", env=DB_KEYS)
    assert sorted(k["state"] for k in rotated) == ["active", "next", "retired"]
    refused = run_idp("keys", "prune", env=DB_KEYS)
    assert refused.returncode != 0 and "--force" in refused.stderr
    pruned = run_json(run_idp, "keys", "prune", "--force", env=DB_KEYS)
    assert len(pruned) == 1
    assert len(store.records()) == 2
    wrong = run_idp("keys", "list", env={"IDP_KEY_STORE": "database"})
    assert wrong.returncode != 0 and "IDP_KEYS_ENCRYPTION_KEY" in wrong.stderr


def test_import_files_copies_the_file_store_into_an_empty_database(
    db_app: Flask, store: DatabaseKeyStore, run_idp: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "old-keys"
    files = FileKeyStore(folder)
    files.initialise("ES256")
    files.generate("RS256")
    refused = run_idp("keys", "import-files", "--from", str(folder), env=DB_KEYS)
    assert refused.returncode != 0 and "already holds 2 keys" in refused.stderr
    not_db = run_idp("keys", "import-files", "--from", str(folder))
    assert not_db.returncode != 0 and "IDP_KEY_STORE=database" in not_db.stderr

    _wipe(store)
    imported = run_json(run_idp, "keys", "import-files", "--from", str(folder), env=DB_KEYS)
    by_kid = sorted(files.records(), key=lambda r: r.kid)
    assert sorted(imported, key=lambda r: r["kid"]) == [r.as_json() for r in by_kid]
    assert sorted(store.records(), key=lambda r: r.kid) == by_kid
    for record in files.records():
        assert store.private_jwk(record.kid) == files.private_jwk(record.kid)
    # Workers now sign with the key the file store had active.
    with db_app.app_context():
        db.session.remove()
    active = next(r.kid for r in files.records() if r.state == "active")
    assert runtime(db_app).key_ring.current().active.kid == active  # type: ignore[union-attr]
