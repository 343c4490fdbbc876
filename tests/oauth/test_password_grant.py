"""The password grant: tokens, identical failures, lockout, tenants, id_token, userinfo."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from freezegun import freeze_time
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.models import AuditEvent, User, db
from idp.registrations.tenants import create_tenant
from idp.users.records import user_record
from tests.conftest import ISSUER
from tests.oauth.helpers import PASSWORD, login, make_user, password_client


@pytest.fixture
def client(app):
    return password_client(app)


@pytest.fixture
def alice(app):
    return make_user(app, "alice", scope="user:read")


def published_keys(http) -> KeySet:
    return KeySet.import_key_set(http.get("/oidc/jwks").get_json())


def test_password_grant_issues_access_refresh_and_id_token(http, app, client, alice) -> None:
    response = login(http, client, scope="openid user:self")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["scope"] == "openid user:self"
    assert len(body["refresh_token"]) >= 43
    keys = published_keys(http)
    access = jwt.decode(body["access_token"], keys, algorithms=["ES256"])
    assert access.header["typ"] == "at+jwt"
    assert access.claims["sub"] == alice and access.claims["client_id"] == client[0]
    assert access.claims["tenant"] == "default"
    id_token = jwt.decode(body["id_token"], keys, algorithms=["ES256"])
    assert id_token.claims["iss"] == ISSUER and id_token.claims["sub"] == alice
    assert id_token.claims["aud"] == client[0]
    assert abs(id_token.claims["auth_time"] - time.time()) < 60
    assert {"exp", "iat"} <= id_token.claims.keys()
    with app.app_context():
        user = db.session.get(User, alice)
        assert user.last_accessed is not None
        events = [e.event for e in db.session.query(AuditEvent).all()]
        assert "login_success" in events


def test_no_scope_asked_gives_the_whole_allowed_set(http, app, alice) -> None:
    client = password_client(app, scope="openid user:read user:delete user:self")
    body = login(http, client).get_json()
    # user:delete is the client's but not alice's; openid and user:self are every user's.
    assert body["scope"] == "openid user:read user:self"
    assert "id_token" in body


def test_scope_outside_the_allowed_set_is_invalid_scope(http, client, alice) -> None:
    response = login(http, client, scope="openid user:delete")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_scope"


def test_no_id_token_without_openid_and_no_refresh_without_the_grant(http, app, alice) -> None:
    client = password_client(app, grant_types=("password",))
    body = login(http, client, scope="user:self").get_json()
    assert "id_token" not in body and "refresh_token" not in body


def test_failures_are_identical_for_unknown_wrong_and_locked(http, app, client, alice) -> None:
    make_user(app, "locked-bob")
    with app.app_context():
        bob = db.session.query(User).filter_by(username="locked-bob").one()
        bob.locked = True
        db.session.commit()
    unknown = login(http, client, username="nobody")
    wrong = login(http, client, password="Wrong-Horse-99")
    locked = login(http, client, username="locked-bob")
    for response in (unknown, wrong, locked):
        assert response.status_code == 400
        assert response.headers["Cache-Control"] == "no-store"
    assert unknown.get_json() == wrong.get_json() == locked.get_json()
    assert unknown.get_json()["error"] == "invalid_grant"


def test_metrics_do_not_tell_which_sign_in_failure_happened(http, app, client, alice) -> None:
    """An enumeration oracle: per-reason failure counts beside identical answers."""
    make_user(app, "locked-carol")
    with app.app_context():
        db.session.query(User).filter_by(username="locked-carol").one().locked = True
        db.session.commit()

    def failures() -> str:
        text = http.get("/metrics").get_data(as_text=True)
        return "\n".join(line for line in text.splitlines() if "idp_token_failures" in line)

    for username, password in (("nobody", "x"), ("alice", "Wrong-1"), ("locked-carol", "x")):
        assert login(http, client, username=username, password=password).status_code == 400
        lines = failures()
        assert 'error="invalid_grant",rule="bad_credentials"' in lines
        for reason in ("unknown_user", "bad_password", "locked"):
            assert f'rule="{reason}"' not in lines
    # Positive control: the operator-only audit log keeps the detail.
    with app.app_context():
        reasons = [
            e.detail.get("reason")
            for e in db.session.query(AuditEvent).filter_by(event="login_failure")
        ]
    assert {"unknown_user", "bad_password", "locked"} <= set(reasons)


def test_unknown_user_costs_a_password_verification(http, client, alice, monkeypatch) -> None:
    from idp.users import policy

    calls = []
    real = policy.verify_password
    monkeypatch.setattr(policy, "verify_password", lambda h, p: calls.append(h) or real(h, p))
    login(http, client, username="nobody")
    login(http, client, password="Wrong-Horse-99")
    assert len(calls) == 2 and all(h.startswith("$argon2id$") for h in calls)


def test_lockout_at_the_threshold_and_unlock_after_the_duration(http, app, client, alice):
    with freeze_time("2026-03-01 12:00:00") as clock:
        for _ in range(4):
            assert login(http, client, password="Wrong-Horse-99").status_code == 400
        assert login(http, client).status_code == 200  # a success resets the counter
        for _ in range(5):
            login(http, client, password="Wrong-Horse-99")
        with app.app_context():
            user = db.session.get(User, alice)
            assert user.bad_attempts == 5 and user.locked_until is not None
        refused = login(http, client)
        assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_grant"
        clock.tick(timedelta(seconds=899))
        assert login(http, client).status_code == 400
        clock.tick(timedelta(seconds=2))
        assert login(http, client).status_code == 200
        with app.app_context():
            user = db.session.get(User, alice)
            assert user.bad_attempts == 0 and user.locked_until is None
            events = [e.event for e in db.session.query(AuditEvent).all()]
            assert "user_locked" in events and events.count("login_failure") >= 10


def test_lockout_duration_zero_locks_until_unlocked(make_app) -> None:
    app = make_app(IDP_LOCKOUT_DURATION="0", IDP_LOCKOUT_THRESHOLD="2")
    http = app.test_client()
    client = password_client(app)
    user_id = make_user(app)
    for _ in range(2):
        login(http, client, password="Wrong-Horse-99")
    with freeze_time(timedelta(days=30)):
        assert login(http, client).status_code == 400
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user_record(user)["locked"] is True
        # A bad-password lock, not an operator's: live sessions are left alone.
        assert user.locked is False


def test_cross_tenant_login_is_refused(http, app, alice) -> None:
    with app.app_context():
        create_tenant("acme")
        db.session.commit()
    acme_client = password_client(app, tenant="acme")
    response = login(http, acme_client)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    make_user(app, "alice", tenant="acme", password="Acme-Password-1")
    assert login(http, acme_client, password="Acme-Password-1").status_code == 200
    assert login(http, acme_client).status_code == 400


def test_client_without_the_password_grant_is_unauthorized(http, app, alice) -> None:
    client = password_client(app, grant_types=("client_credentials",))
    response = login(http, client)
    assert response.status_code == 400 and response.get_json()["error"] == "unauthorized_client"


def test_missing_username_or_password_is_invalid_request(http, client) -> None:
    from tests.oauth.helpers import basic

    response = http.post(
        "/oidc/token", data={"grant_type": "password", "username": "a"}, headers=basic(*client)
    )
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_userinfo(http, app, alice) -> None:
    client = password_client(app)
    token = login(http, client, scope="openid email").get_json()["access_token"]
    response = http.get("/oidc/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.get_json() == {
        "sub": alice,
        "preferred_username": "alice",
        "email": "alice@example.com",
    }
    no_email = login(http, client, scope="openid").get_json()["access_token"]
    body = http.get("/oidc/userinfo", headers={"Authorization": f"Bearer {no_email}"}).get_json()
    assert "email" not in body


def test_userinfo_refuses_tokens_without_openid_and_garbage(http, app, alice) -> None:
    client = password_client(app)
    token = login(http, client, scope="user:self").get_json()["access_token"]
    response = http.get("/oidc/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    garbage = http.get("/oidc/userinfo", headers={"Authorization": "Bearer x.y.z"})
    assert garbage.status_code == 401
    assert 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]
    missing = http.get("/oidc/userinfo")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")


def test_password_is_rehashed_when_parameters_change(http, app, client, alice, monkeypatch):
    from argon2 import PasswordHasher

    from idp.users import passwords

    with app.app_context():
        old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
        db.session.get(User, alice).password_hash = old
        db.session.commit()
    assert login(http, client).status_code == 200
    with app.app_context():
        new = db.session.get(User, alice).password_hash
    assert new != old and not passwords.needs_rehash(new)
    assert pyjwt  # PyJWT stays importable for the independent checks elsewhere


def test_concurrent_bad_passwords_are_all_counted(make_app, idp_env, live_server) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.oauth.helpers import basic

    app = make_app(IDP_LOCKOUT_THRESHOLD="50")
    client = password_client(app)
    user_id = make_user(app)
    base_url = live_server(idp_env | {"IDP_LOCKOUT_THRESHOLD": "50"}, workers=2)
    barrier = threading.Barrier(10)
    form = {"grant_type": "password", "username": "alice", "password": "Wrong-Horse-99"}

    def attempt(_: int) -> int:
        barrier.wait(10)
        return requests.post(
            f"{base_url}/oidc/token", data=form, headers=basic(*client), timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(attempt, range(10)))
    assert statuses == [400] * 10
    with app.app_context():
        assert db.session.get(User, user_id).bad_attempts == 10
