"""client_credentials with ``sub``: a client's token for one of its own users (the users it
created through /users), as Moneyhub's API users get theirs; users with no password."""

from __future__ import annotations

from typing import Any

import pytest

from idp.models import User, db
from idp.runtime import runtime
from idp.verify import LocalJwks, TokenVerifier
from tests.conftest import ISSUER
from tests.oauth.helpers import assertion, assertion_form, basic, bearer, client_key, register

CLIENT_SCOPE = "user:create user:read user:self openid"


@pytest.fixture
def moneyhub(app) -> tuple[str, Any]:
    key = client_key()
    client_id, _ = register(app, key=key, scope=CLIENT_SCOPE)
    return client_id, key


def client_token(http, client, **extra: str):
    client_id, key = client
    return http.post("/oidc/token", data=assertion_form(assertion(key, client_id), **extra))


def create_api_user(http, client, **fields: Any) -> str:
    token = client_token(http, client, scope="user:create").get_json()["access_token"]
    created = http.post("/users", json={"clientUserId": "cu-1", **fields}, headers=bearer(token))
    assert created.status_code == 201, created.get_json()
    return created.get_json()["userId"]


def assert_invalid_grant(response) -> None:
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "invalid_grant"
    assert response.headers["Cache-Control"] == "no-store"


def test_a_client_gets_a_token_for_its_own_password_less_user(app, http, moneyhub) -> None:
    user_id = create_api_user(http, moneyhub, scopes=["user:read"])
    answer = client_token(http, moneyhub, sub=user_id)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert "refresh_token" not in body
    # requested, within the client's scopes and the user's scopes plus the base set
    assert set(body["scope"].split()) == {"user:read", "user:self", "openid"}
    ring = runtime(app).key_ring
    verifier = TokenVerifier(
        ISSUER, ISSUER, LocalJwks(lambda: (ring.current().etag, ring.current().jwks_body))
    )
    claims = verifier.verify(body["access_token"]).claims
    assert claims["sub"] == user_id and claims["client_id"] == moneyhub[0]
    me = http.get("/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.get_json()["userId"] == user_id
    # Control: the client's own token is still the client's.
    plain = client_token(http, moneyhub).get_json()["access_token"]
    assert http.get("/users/me", headers=bearer(plain)).status_code in (401, 403)


def test_scopes_follow_the_user_rule(http, moneyhub) -> None:
    user_id = create_api_user(http, moneyhub)
    narrowed = client_token(http, moneyhub, sub=user_id, scope="user:self")
    assert narrowed.get_json()["scope"] == "user:self"
    # user:create is the client's, but not the user's: outside the set.
    beyond = client_token(http, moneyhub, sub=user_id, scope="user:self user:create")
    assert beyond.status_code == 400 and beyond.get_json()["error"] == "invalid_scope"


def test_without_user_self_the_token_cannot_read_me(http, app) -> None:
    key = client_key()
    client = (register(app, key=key, scope="user:create user:read")[0], key)
    user_id = create_api_user(http, client, scopes=["user:read"])
    body = client_token(http, client, sub=user_id).get_json()
    assert body["scope"] == "user:read"
    assert http.get("/users/me", headers=bearer(body["access_token"])).status_code == 403


def test_another_clients_user_is_invalid_grant(app, http, moneyhub) -> None:
    key = client_key()
    other = (register(app, key=key, scope=CLIENT_SCOPE)[0], key)
    theirs = create_api_user(http, other)
    assert_invalid_grant(client_token(http, moneyhub, sub=theirs))
    assert client_token(http, other, sub=theirs).status_code == 200  # control


def test_another_tenants_user_is_invalid_grant(app, http) -> None:
    from idp.registrations.tenants import create_tenant

    with app.app_context():
        create_tenant("acme")
        db.session.commit()
    key = client_key()
    acme = (register(app, key=key, scope=CLIENT_SCOPE, tenant="acme")[0], key)
    acme_user = create_api_user(http, acme)
    with app.app_context():
        # Even when pointed at the client by hand, a user of another tenant is refused.
        default_client, secret = register(
            app, auth_method="client_secret_basic", scope=CLIENT_SCOPE
        )
        db.session.get(User, acme_user).client_id = default_client
        db.session.commit()
    form = {"grant_type": "client_credentials", "sub": acme_user}
    answer = http.post("/oidc/token", data=form, headers=basic(default_client, secret))
    assert_invalid_grant(answer)


def test_unknown_users_are_invalid_grant(http, moneyhub) -> None:
    user_id = create_api_user(http, moneyhub)
    assert client_token(http, moneyhub, sub=user_id).status_code == 200  # control
    for unknown in ("00000000-0000-0000-0000-000000000000", "x" * 500, "'; DROP TABLE users"):
        assert_invalid_grant(client_token(http, moneyhub, sub=unknown))
    empty = client_token(http, moneyhub, sub="")
    assert empty.status_code == 400 and empty.get_json()["error"] == "invalid_request"


def test_locked_and_deleted_users(app, http, moneyhub) -> None:
    user_id = create_api_user(http, moneyhub)
    with app.app_context():
        db.session.get(User, user_id).locked = True
        db.session.commit()
    assert_invalid_grant(client_token(http, moneyhub, sub=user_id))
    with app.app_context():
        row = db.session.get(User, user_id)
        row.locked = False
        db.session.commit()
    assert client_token(http, moneyhub, sub=user_id).status_code == 200  # control
    with app.app_context():
        row = db.session.get(User, user_id)
        row.deleted_at = row.created_at
        db.session.commit()
    assert_invalid_grant(client_token(http, moneyhub, sub=user_id))


def test_a_secret_client_may_ask_too(app, http) -> None:
    client_id, secret = register(app, auth_method="client_secret_basic", scope=CLIENT_SCOPE)
    token = http.post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    ).get_json()["access_token"]
    created = http.post("/users", json={"username": "bob"}, headers=bearer(token))
    answer = http.post(
        "/oidc/token",
        data={"grant_type": "client_credentials", "sub": created.get_json()["userId"]},
        headers=basic(client_id, secret),
    )
    assert answer.status_code == 200, answer.get_json()
