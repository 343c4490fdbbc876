"""Refresh_token: rotation, family reuse detection, narrowing, user state, races."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from freezegun import freeze_time

from idp.models import AuditEvent, RefreshToken, User, db, utcnow
from idp.oauth.grants.refresh_token import REFRESH_REFUSED
from idp.tokens.refresh_tokens import token_hash
from idp.users.passwords import hash_password
from tests.oauth.helpers import PASSWORD, basic, login, make_user, password_client, refresh


@pytest.fixture
def client(app):
    return password_client(app, scope="openid profile email user:self user:read")


@pytest.fixture
def alice(app):
    return make_user(app, "alice", scope="user:read")


@pytest.fixture
def session(http, client, alice):
    body = login(http, client, scope="openid user:read user:self").get_json()
    return body["refresh_token"]


def assert_refused(response, description: str = REFRESH_REFUSED) -> None:
    """invalid_grant with the description every other error carries."""
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_grant", "error_description": description}


def test_refresh_rotates_the_token(http, app, client, session) -> None:
    first = refresh(http, client, session)
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["refresh_token"] != session
    assert body["scope"] == "openid user:read user:self" and "id_token" in body
    assert first.headers["Cache-Control"] == "no-store"
    with app.app_context():
        stored = db.session.query(RefreshToken).all()
        assert len(stored) == 2
        assert all(row.token_hash != session for row in stored)  # only hashes are stored
        assert {row.family_id for row in stored}.__len__() == 1
    second = refresh(http, client, body["refresh_token"])
    assert second.status_code == 200


def test_reusing_a_used_token_revokes_the_whole_family(http, app, client, session) -> None:
    newest = refresh(http, client, session).get_json()["refresh_token"]
    reuse = refresh(http, client, session)
    assert_refused(reuse, "refresh token was already used; its sessions are revoked")
    assert_refused(refresh(http, client, newest))
    with app.app_context():
        events = [e.event for e in db.session.query(AuditEvent).all()]
        assert "refresh_reuse_detected" in events


def test_scope_may_narrow_but_not_widen(http, client, session) -> None:
    narrowed = refresh(http, client, session, scope="user:read")
    assert narrowed.status_code == 200 and narrowed.get_json()["scope"] == "user:read"
    # The new refresh token keeps the original scope (RFC 6749 §6).
    again = refresh(http, client, narrowed.get_json()["refresh_token"], scope="openid user:self")
    assert again.status_code == 200
    widened = refresh(http, client, again.get_json()["refresh_token"], scope="user:read email")
    assert widened.status_code == 400 and widened.get_json()["error"] == "invalid_scope"


def test_another_client_cannot_use_it(http, app, session) -> None:
    thief = password_client(app)
    assert_refused(refresh(http, thief, session))  # as if unknown


def test_a_failed_refresh_does_not_consume_the_token(http, client, session) -> None:
    widened = refresh(http, client, session, scope="admin")
    assert widened.status_code == 400
    assert refresh(http, client, session).status_code == 200


@pytest.mark.parametrize("change", ["delete", "lock", "password_reset"])
def test_user_state_changes_kill_refresh_tokens(http, app, client, alice, session, change):
    with app.app_context():
        user = db.session.get(User, alice)
        if change == "delete":
            user.deleted_at = utcnow()
        elif change == "lock":
            user.locked = True
        else:
            user.password_hash = hash_password("Another-Password-7")
            user.password_changed_at = utcnow() + timedelta(seconds=1)
        db.session.commit()
    response = refresh(http, client, session)
    assert_refused(response, "the user of this refresh token can no longer sign in")


def test_a_password_changed_through_the_api_ends_the_session_with_a_reason(
    http, client, alice, session
) -> None:
    renewed = refresh(http, client, session).get_json()
    change = {"currentPassword": PASSWORD, "newPassword": "Another-Password-7"}
    headers = {"Authorization": f"Bearer {renewed['access_token']}"}
    assert http.put("/users/me/password", json=change, headers=headers).status_code == 204
    assert_refused(refresh(http, client, renewed["refresh_token"]))


def test_absolute_lifetime(http, app, alice) -> None:
    client = password_client(app, refresh_token_ttl=600)
    with freeze_time(utcnow() + timedelta(days=1)) as clock:
        first = login(http, client).get_json()
        assert first["refresh_token_expires_in"] == 600
        clock.tick(timedelta(seconds=500))
        renewed = refresh(http, client, first["refresh_token"]).get_json()
        assert renewed["refresh_token_expires_in"] == 100  # a refresh never extends the login
        token = renewed["refresh_token"]
        clock.tick(timedelta(seconds=101))  # 601 s after the login: past the lifetime
        assert_refused(refresh(http, client, token))


def test_without_an_absolute_lifetime_no_expiry_is_announced(http, app, alice) -> None:
    body = login(http, password_client(app)).get_json()
    assert body["refresh_token"] and "refresh_token_expires_in" not in body


def test_unknown_and_missing_refresh_tokens(http, client) -> None:
    assert_refused(refresh(http, client, "not-a-token"))
    missing = http.post("/oidc/token", data={"grant_type": "refresh_token"}, headers=basic(*client))
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"


def _race(base_url: str, client, token: str, count: int = 10) -> list[requests.Response]:
    barrier = threading.Barrier(count)

    def use(_: int) -> requests.Response:
        barrier.wait(10)
        return requests.post(
            f"{base_url}/oidc/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            headers=basic(*client),
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(use, range(count)))


def _usable_in_family(app, token: str) -> list[RefreshToken]:
    with app.app_context():
        family = db.session.query(RefreshToken).filter_by(token_hash=token_hash(token)).one()
        return (
            db.session.query(RefreshToken)
            .filter_by(family_id=family.family_id, used_at=None, revoked_at=None)
            .all()
        )


def _login_live(base_url: str, client) -> str:
    form = {"grant_type": "password", "username": "alice", "password": "Correct-Horse-9"}
    response = requests.post(
        f"{base_url}/oidc/token", data=form, headers=basic(*client), timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()["refresh_token"]


def test_ten_concurrent_refreshes_on_two_workers_succeed_exactly_once(
    app, idp_env, live_server, client, alice
):
    base_url = live_server(idp_env, workers=2)
    token = _login_live(base_url, client)
    responses = _race(base_url, client, token)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1, statuses
    assert statuses.count(400) == 9, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    # The losers saw a reuse: the family, with the winner's new token, is revoked.
    assert _usable_in_family(app, token) == []


def test_ten_concurrent_refreshes_with_grace_leave_one_usable_token(
    app, idp_env, live_server, alice
):
    client = password_client(
        app, scope="openid profile email user:self user:read", refresh_reuse_grace=30
    )
    base_url = live_server(idp_env, workers=2)
    token = _login_live(base_url, client)
    responses = _race(base_url, client, token)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 400}, statuses
    usable = _usable_in_family(app, token)
    assert len(usable) == 1, statuses
    issued = {token_hash(r.json()["refresh_token"]) for r in responses if r.status_code == 200}
    assert usable[0].token_hash in issued
    # The one that is left is the family's only way forward, and it works.
    survivor = next(
        r.json()["refresh_token"]
        for r in responses
        if r.status_code == 200 and token_hash(r.json()["refresh_token"]) == usable[0].token_hash
    )
    after = requests.post(
        f"{base_url}/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": survivor},
        headers=basic(*client),
        timeout=30,
    )
    assert after.status_code == 200, after.text


def test_a_retry_within_the_grace_replaces_the_successor(http, app, alice) -> None:
    client = password_client(app, scope="openid user:self user:read", refresh_reuse_grace=10)
    with freeze_time(utcnow()) as clock:
        first = login(http, client).get_json()["refresh_token"]
        lost = refresh(http, client, first).get_json()  # the answer that never arrived
        clock.tick(timedelta(seconds=5))
        retry = refresh(http, client, first)
        assert retry.status_code == 200, retry.get_json()
        assert refresh(http, client, lost["refresh_token"]).status_code == 400  # revoked
        assert refresh(http, client, retry.get_json()["refresh_token"]).status_code == 200
        assert _usable_in_family(app, first).__len__() == 1


def test_reuse_after_the_grace_revokes_the_family(http, app, alice) -> None:
    client = password_client(app, scope="openid user:self user:read", refresh_reuse_grace=10)
    with freeze_time(utcnow()) as clock:
        first = login(http, client).get_json()["refresh_token"]
        successor = refresh(http, client, first).get_json()["refresh_token"]
        clock.tick(timedelta(seconds=11))
        reuse = refresh(http, client, first)
        assert reuse.status_code == 400 and reuse.get_json()["error"] == "invalid_grant"
        assert refresh(http, client, successor).status_code == 400
        assert _usable_in_family(app, first) == []


def test_without_grace_an_immediate_retry_is_reuse(http, app, client, alice) -> None:
    first = login(http, client).get_json()["refresh_token"]
    successor = refresh(http, client, first).get_json()["refresh_token"]
    assert refresh(http, client, first).status_code == 400
    assert refresh(http, client, successor).status_code == 400


def test_the_global_grace_setting_applies_without_a_client_override(make_app) -> None:
    app = make_app(IDP_REFRESH_REUSE_GRACE="30")
    http = app.test_client()
    make_user(app, "alice", scope="user:read")
    client = password_client(app, scope="openid user:self user:read")
    first = login(http, client).get_json()["refresh_token"]
    assert refresh(http, client, first).status_code == 200
    assert refresh(http, client, first).status_code == 200
    assert len(_usable_in_family(app, first)) == 1


def test_scopes_withdrawn_since_login_are_not_renewed(http, app, client, alice, session) -> None:
    with app.app_context():
        db.session.get(User, alice).scopes = []
        db.session.commit()
    response = refresh(http, client, session)
    assert response.status_code == 200
    assert response.get_json()["scope"] == "openid user:self"  # user:read was withdrawn
