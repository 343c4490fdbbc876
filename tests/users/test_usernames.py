"""Usernames: one name per RFC 8265 comparison form, look-alikes refused.

Each attack comes with a positive control, so a test cannot pass merely because
everything is refused. Non-ASCII names are written as escapes: the point of these
tests is characters that look like others.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import downgrade, upgrade

from idp.app import MIGRATIONS_DIR, create_app
from idp.errors import IdpError
from idp.models import AuditEvent, User, db
from idp.models.base import UTCDateTime
from idp.registrations.tenants import create_tenant
from idp.settings import load_settings
from idp.users.usernames import InvalidUsername, username_key
from tests.oauth.helpers import login, password_client
from tests.users.conftest import client_token

PASSWORD = "Sup3r-Secret!"
FULLWIDTH_ALICE = "\uff41\uff4c\uff49\uff43\uff45"  # "alice" in full-width letters
FULLWIDTH_ALICE_UPPER = "\uff21\uff2c\uff29\uff23\uff25"
CYRILLIC_ALISA = "\u0430\u043b\u0438\u0441\u0430"  # wholly Cyrillic: allowed


def create(http: Any, headers: dict[str, str], **body: Any) -> Any:
    return http.post("/users", json=body, headers=headers)


def created(http: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = create(http, headers, **body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def usernames(http: Any, headers: dict[str, str], query: str = "") -> list[str]:
    response = http.get(f"/users{query}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["total"] == len(body["users"])
    return [u["username"] for u in body["users"]]


# -- creating ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["Alice", "ALICE", FULLWIDTH_ALICE, FULLWIDTH_ALICE_UPPER])
def test_case_and_width_variants_of_a_taken_name_are_409(http, admin, variant) -> None:
    created(http, admin, username="alice")
    body = assert_problem(create(http, admin, username=variant), 409)
    assert "already exists" in body["detail"]
    # Control: a different name is still accepted, and the refusal wrote nothing.
    created(http, admin, username="alicia")
    assert usernames(http, admin) == ["alice", "alicia"]


REFUSED = {
    "alice\u200b": "U+200B",  # trailing ZERO WIDTH SPACE
    "al\u200dice": "U+200D",  # ZERO WIDTH JOINER inside
    "ali\u0441e": "CYRILLIC and LATIN",  # Cyrillic es among Latin letters
    "a b": "U+0020",  # a space
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_invisible_spaced_and_mixed_script_names_are_400(http, admin, name) -> None:
    body = assert_problem(create(http, admin, username=name, password=PASSWORD), 400)
    assert REFUSED[name] in body["detail"]
    assert body["errors"] == [{"field": "username", "message": body["detail"]}]
    assert usernames(http, admin) == []
    # Control: the rule is about mixing, not about leaving ASCII.
    assert created(http, admin, username=CYRILLIC_ALISA)["username"] == CYRILLIC_ALISA


def test_the_name_is_stored_and_shown_as_given(http, app, admin) -> None:
    user = created(http, admin, username="Alice")
    assert user["username"] == "Alice"
    shown = http.get(f"/users/{user['userId']}", headers=admin).get_json()
    assert shown["username"] == "Alice"
    with app.app_context():
        stored = db.session.get(User, user["userId"])
        assert (stored.username, stored.username_key) == ("Alice", "alice")


def test_a_soft_deleted_name_is_free_again(http, admin) -> None:
    old = created(http, admin, username="alice")
    assert_problem(create(http, admin, username="ALICE"), 409)
    assert http.delete(f"/users/{old['userId']}", headers=admin).status_code == 204
    new = created(http, admin, username="ALICE")
    assert new["userId"] != old["userId"] and new["username"] == "ALICE"


def test_the_same_name_in_another_tenant_is_another_user(http, app, admin) -> None:
    created(http, admin, username="alice")
    with app.app_context():
        create_tenant("other")
        db.session.commit()
    other = {"Authorization": f"Bearer {client_token(http, app, tenant='other')}"}
    assert created(http, other, username="ALICE")["tenant"] == "other"


# -- listing -------------------------------------------------------------------------


def test_the_username_filter_compares_comparison_forms(http, admin) -> None:
    created(http, admin, username="alice")
    created(http, admin, username="bob")
    assert usernames(http, admin, "?username=ALICE") == ["alice"]
    assert usernames(http, admin, f"?username={FULLWIDTH_ALICE}") == ["alice"]
    # A name no user can have matches nothing rather than failing.
    assert usernames(http, admin, "?username=ali\u0441e") == []
    assert usernames(http, admin, "?username=a%20b") == []
    assert usernames(http, admin, "?username=bob") == ["bob"]  # control


# -- signing in ----------------------------------------------------------------------


@pytest.fixture
def alice(http, admin) -> str:
    return created(http, admin, username="alice", password=PASSWORD)["userId"]


@pytest.fixture
def client(app) -> tuple[str, str]:
    return password_client(app, scope="openid user:self")


def _subject(http: Any, response: Any) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    token = response.get_json()["access_token"]
    me = http.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.get_data(as_text=True)
    assert me.get_json()["username"] == "alice"  # shown as it was created
    return me.get_json()["userId"]


@pytest.mark.parametrize("given", ["alice", "Alice", FULLWIDTH_ALICE_UPPER])
def test_other_forms_of_the_name_sign_in_as_the_user(http, client, alice, given) -> None:
    assert _subject(http, login(http, client, username=given, password=PASSWORD)) == alice
    # Control: the folded name still needs the password.
    wrong = login(http, client, username=given, password="Wrong-Horse-99")
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_an_invalid_name_fails_exactly_like_an_unknown_user(
    http, app, client, alice, monkeypatch, name
) -> None:
    from idp.users import policy

    hashes: list[str] = []
    real = policy.verify_password
    monkeypatch.setattr(policy, "verify_password", lambda h, p: hashes.append(h) or real(h, p))
    unknown = login(http, client, username="nobody", password=PASSWORD)
    invalid = login(http, client, username=name, password=PASSWORD)
    assert invalid.status_code == unknown.status_code == 400
    assert invalid.get_json() == unknown.get_json()
    assert invalid.get_json()["error"] == "invalid_grant"
    # The same dummy-hash verification and the same audit reason for both.
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    with app.app_context():
        reasons = [
            e.detail.get("reason")
            for e in db.session.query(AuditEvent).filter_by(event="login_failure")
        ]
    assert reasons == ["unknown_user", "unknown_user"]


# -- the CLI -------------------------------------------------------------------------


def test_the_cli_refuses_look_alikes_with_one_line(app, run_idp) -> None:
    made = run_idp("users", "create", "--username", "alice")
    assert made.returncode == 0, made.stderr  # control
    for name, expected in (("Alice", "already exists"), ("ali\u0441e", "CYRILLIC and LATIN")):
        refused = run_idp("users", "create", "--username", name)
        assert refused.returncode == 1
        assert refused.stderr.startswith("idp: error: ") and expected in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    with app.app_context():
        assert [u.username for u in db.session.query(User)] == ["alice"]


# -- the migration -------------------------------------------------------------------

_TENANTS = sa.table(
    "tenants", sa.column("id", sa.Integer), sa.column("name", sa.String),
    sa.column("created_at", UTCDateTime()),
)  # fmt: skip
# The users table as revision 0001 left it (no username_key yet).
_USERS_0001 = sa.table(
    "users", sa.column("id", sa.String), sa.column("tenant_id", sa.Integer),
    sa.column("username", sa.String), sa.column("scopes", sa.JSON),
    sa.column("user_type", sa.String), sa.column("locked", sa.Boolean),
    sa.column("bad_attempts", sa.Integer), sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()), sa.column("deleted_at", UTCDateTime()),
)  # fmt: skip


@pytest.fixture
def blank_database_url(
    profile: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """An empty database of the profile's kind, for migrating step by step."""
    if profile != "production":
        yield f"sqlite:///{tmp_path / 'migrating.sqlite3'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"idp_usernames_{uuid.uuid4().hex[:12]}"
    yield server.create_database(name)
    server.drop_database(name)


@pytest.fixture
def migrating_app(blank_database_url: str, tmp_path: Path) -> Iterator[Flask]:
    settings = {"IDP_DATABASE_URL": blank_database_url, "IDP_KEYS_DIR": str(tmp_path / "k")}
    app = create_app(load_settings(settings))
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR), revision="0001")
        yield app
        db.session.remove()
        db.engine.dispose()


def _seed(*users: tuple[str, str, bool]) -> dict[str, str]:
    """Insert (username, tenant, live) rows at revision 0001; returns username -> id."""
    now = datetime.now(UTC)
    ids: dict[str, str] = {}
    with db.engine.begin() as connection:
        tenants: dict[str, int] = {}
        for number, tenant in enumerate(dict.fromkeys(t for _, t, _ in users), start=1):
            connection.execute(sa.insert(_TENANTS).values(id=number, name=tenant, created_at=now))
            tenants[tenant] = number
        for username, tenant, live in users:
            ids[username] = str(uuid.uuid4())
            connection.execute(
                sa.insert(_USERS_0001).values(
                    id=ids[username], tenant_id=tenants[tenant], username=username, scopes=[],
                    user_type="user", locked=False, bad_attempts=0, created_at=now,
                    updated_at=now, deleted_at=None if live else now,
                )
            )  # fmt: skip
    return ids


def _columns() -> set[str]:
    return {c["name"] for c in sa.inspect(db.engine).get_columns("users")}


def _keys() -> dict[str, str | None]:
    with db.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT username, username_key FROM users"))
        return {name: key for name, key in rows}


def test_colliding_live_names_stop_the_upgrade_naming_them(migrating_app) -> None:
    ids = _seed(("Bob", "default", True), ("bob", "default", True), ("carol", "default", True))
    with pytest.raises(IdpError) as refused:
        upgrade(directory=str(MIGRATIONS_DIR), revision="head")
    message = str(refused.value)
    assert "'Bob'" in message and "'bob'" in message
    assert ids["Bob"] in message and ids["bob"] in message and "tenant 1" in message
    assert "carol" not in message
    # Nothing was half-applied: after the operator deletes one, the rerun succeeds.
    assert "username_key" not in _columns()
    with db.engine.begin() as connection:
        connection.execute(
            sa.update(_USERS_0001).where(_USERS_0001.c.id == ids["Bob"])
            .values(deleted_at=datetime.now(UTC))
        )  # fmt: skip
    upgrade(directory=str(MIGRATIONS_DIR), revision="head")
    assert _keys() == {"Bob": "bob", "bob": "bob", "carol": "carol"}


def test_an_invalid_live_name_stops_the_upgrade(migrating_app) -> None:
    ids = _seed(("a b", "default", True))
    with pytest.raises(IdpError, match="U\\+0020") as refused:
        upgrade(directory=str(MIGRATIONS_DIR), revision="head")
    assert ids["a b"] in str(refused.value)


def test_without_collisions_the_upgrade_fills_username_key(migrating_app) -> None:
    # Same folded name in two tenants, and a deleted duplicate: neither collides.
    # A deleted invalid name keeps no key instead of blocking the upgrade.
    _seed(
        ("Bob", "default", True),
        ("BOB", "acme", True),
        (FULLWIDTH_ALICE, "default", True),
        ("alice", "default", False),
        ("x y", "default", False),
    )
    upgrade(directory=str(MIGRATIONS_DIR), revision="0002")
    assert _keys() == {
        "Bob": "bob", "BOB": "bob", FULLWIDTH_ALICE: "alice", "alice": "alice", "x y": None,
    }  # fmt: skip
    indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("users")}
    assert "uq_users_tenant_username_key" in indexes
    assert "uq_users_tenant_username" not in indexes


def test_the_upgrade_and_downgrade_round_trip(migrating_app) -> None:
    _seed(("Bob", "default", True))
    upgrade(directory=str(MIGRATIONS_DIR), revision="0002")
    assert "username_key" in _columns()
    downgrade(directory=str(MIGRATIONS_DIR), revision="0001")
    assert "username_key" not in _columns()
    indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("users")}
    assert "uq_users_tenant_username" in indexes
    upgrade(directory=str(MIGRATIONS_DIR), revision="0002")
    assert _keys() == {"Bob": "bob"}


def test_idp_init_fails_with_the_list(migrating_app, run_idp, blank_database_url) -> None:
    ids = _seed(("Bob", "default", True), ("bob", "default", True))
    db.engine.dispose()  # let the subprocess have the database
    result = run_idp("init", env={"IDP_DATABASE_URL": blank_database_url})
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("idp: error: cannot make usernames unique")
    assert ids["Bob"] in result.stderr and ids["bob"] in result.stderr


def test_the_migration_keeps_its_own_copy_of_todays_rule() -> None:
    """Revision 0002 computes keys with the rule as it stood then, so later code cannot
    change what it does. Should the live rule ever differ, stored keys need a new
    migration: this test is where that shows."""
    frozen = importlib.import_module("idp.migrations.versions.0002_username_key")
    full_width = "\uff41\uff4c\uff49\uff43\uff45"
    for name in ["alice", "Alice", full_width, "İstanbul", "Ωμέγα", "x" * 200]:
        assert frozen.username_key(name) == username_key(name), name
    for name in [*sorted(REFUSED), "x" * 250, ""]:
        with pytest.raises(InvalidUsername):
            username_key(name)
        with pytest.raises(frozen.InvalidUsername):
            frozen.username_key(name)
