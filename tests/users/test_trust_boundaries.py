"""No one hands out more scopes than they hold, and changing one's own password
is no guessing channel. Each attack has a positive control beside it."""

from __future__ import annotations

import pytest

from idp.models import AuditEvent, User, db
from tests.oauth.helpers import PASSWORD, bearer, login, make_user, password_client
from tests.users.conftest import client_token


def assert_refused_scopes(response, *scopes: str) -> None:
    assert response.status_code == 403, response.get_json()
    assert response.mimetype == "application/problem+json"
    detail = response.get_json()["detail"]
    for scope in scopes:
        assert scope in detail


def test_a_create_only_client_cannot_mint_an_administrator(http, app) -> None:
    creator = bearer(client_token(http, app, scope="user:create"))
    attack = http.post(
        "/users",
        json={"username": "mallory", "password": "Mallory-Pass-1!",
              "scopes": ["user:update", "user:delete", "user:create"]},
        headers=creator,
    )  # fmt: skip
    assert_refused_scopes(attack, "user:update", "user:delete")
    assert "user:create" not in attack.get_json()["detail"].split(": ", 1)[1].split()
    # Nothing was written: mallory cannot log in through a broad client of the tenant.
    broad = password_client(app, scope="openid user:self user:create user:update user:delete")
    assert login(http, broad, username="mallory", password="Mallory-Pass-1!").status_code == 400
    # Positive control: scopes it holds, and the base set every user has, are fine.
    allowed = http.post(
        "/users",
        json={"username": "carol", "password": "Carol-Pass-1!",
              "scopes": ["user:create", "openid", "user:self"]},
        headers=creator,
    )  # fmt: skip
    assert allowed.status_code == 201, allowed.get_json()
    carol = login(http, broad, username="carol", password="Carol-Pass-1!").get_json()
    assert set(carol["scope"].split()) == {"openid", "user:self", "user:create"}


def test_patch_cannot_raise_a_user_beyond_the_callers_scopes(http, app) -> None:
    updater = bearer(client_token(http, app, scope="user:read user:update"))
    user_id = make_user(app, "dave")
    attack = http.patch(f"/users/{user_id}", json={"scopes": ["user:delete"]}, headers=updater)
    assert_refused_scopes(attack, "user:delete")
    with app.app_context():
        assert db.session.get(User, user_id).scopes == []
    allowed = http.patch(f"/users/{user_id}", json={"scopes": ["user:read"]}, headers=updater)
    assert allowed.status_code == 200 and allowed.get_json()["scopes"] == ["user:read"]


def test_a_users_token_hands_out_only_that_users_scopes(http, app) -> None:
    make_user(app, "erin", scope="user:create user:read")
    client = password_client(app, scope="openid user:self user:create user:read user:delete")
    token = login(http, client, username="erin").get_json()["access_token"]
    attack = http.post(
        "/users", json={"username": "frank", "scopes": ["user:delete"]}, headers=bearer(token)
    )
    assert_refused_scopes(attack, "user:delete")
    allowed = http.post(
        "/users", json={"username": "frank", "scopes": ["user:read"]}, headers=bearer(token)
    )
    assert allowed.status_code == 201, allowed.get_json()


@pytest.fixture
def grace(app):
    make_user(app, "grace", scope="")
    client = password_client(app, scope="openid user:self")
    return login(http_client(app), client, username="grace").get_json()["access_token"]


def http_client(app):
    return app.test_client()


def change_password(http, token: str, current: str):
    body = {"currentPassword": current, "newPassword": "Totally-New-Pass-3"}
    return http.put("/users/me/password", json=body, headers=bearer(token))


def test_the_change_password_lock_is_not_a_guessing_channel(http, app, grace) -> None:
    for _ in range(5):  # IDP_LOCKOUT_THRESHOLD
        assert change_password(http, grace, "Wrong-Guess-123!").status_code == 403
    # Locked now: the correct password is refused without being checked.
    locked = change_password(http, grace, PASSWORD)
    assert locked.status_code == 403
    assert locked.get_json()["detail"] == change_password(http, grace, "x").get_json()["detail"]
    with app.app_context():
        user = db.session.query(User).filter_by(username="grace").one()
        assert user.bad_attempts == 5 and user.locked_until is not None
        events = [
            e.detail.get("reason")
            for e in db.session.query(AuditEvent).filter_by(event="password_change_failure")
        ]
    assert events.count("bad_password") == 5 and events.count("locked") == 2
    # The password grant sees the same lock: the change-password failures counted.
    client = password_client(app, scope="openid user:self")
    assert login(http, client, username="grace").status_code == 400


def test_changing_ones_password_with_the_right_password_works(http, app, grace) -> None:
    assert change_password(http, grace, "Wrong-Guess-123!").status_code == 403
    assert change_password(http, grace, PASSWORD).status_code == 204
    client = password_client(app, scope="openid user:self")
    assert login(http, client, username="grace", password="Totally-New-Pass-3").status_code == 200
