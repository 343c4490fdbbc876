"""Tokens die with what they stand for, at idp's own endpoints and in introspection.

Each test is the attack (a token that should be dead is used) with a positive control
beside it (the same request with a token that should live).
"""

from __future__ import annotations

import time

import pytest

from idp.models import RefreshToken, db
from idp.registrations.clients import delete_client
from idp.runtime import runtime
from idp.stores import Revocation
from idp.stores.database_store import DatabaseRevocationStore
from idp.verify import InvalidToken, LocalJwks, TokenVerifier
from tests.conftest import ISSUER
from tests.oauth.helpers import (
    PASSWORD,
    basic,
    bearer,
    login,
    make_user,
    password_client,
    refresh,
    register,
)
from tests.users.conftest import ALL_SCOPES, client_token

USER_SCOPES = "openid user:self user:read"


@pytest.fixture
def client(app):
    return password_client(app, scope="openid profile email user:self user:read offline_access")


@pytest.fixture
def alice(app):
    return make_user(app, "alice", scope="user:read")


@pytest.fixture
def bob(app):
    return make_user(app, "bob", scope="user:read")


@pytest.fixture
def admin(http, app):
    return {"Authorization": f"Bearer {client_token(http, app)}"}


def sign_in(http, client, username: str = "alice") -> dict:
    response = login(http, client, username=username, scope=USER_SCOPES)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def assert_dead(http, client, access_token: str) -> None:
    """Refused by the users API and userinfo (401 invalid_token), inactive to introspection."""
    me = http.get("/users/me", headers=bearer(access_token))
    assert me.status_code == 401, me.get_json()
    assert 'error="invalid_token"' in me.headers["WWW-Authenticate"]
    info = http.get("/oidc/userinfo", headers=bearer(access_token))
    assert info.status_code == 401 and info.get_json()["error"] == "invalid_token"
    assert introspect(http, client, access_token) == {"active": False}


def assert_alive(http, client, access_token: str) -> None:
    assert http.get("/users/me", headers=bearer(access_token)).status_code == 200
    assert http.get("/oidc/userinfo", headers=bearer(access_token)).status_code == 200
    assert introspect(http, client, access_token)["active"] is True


def introspect(http, client, token: str) -> dict:
    response = http.post("/oidc/introspect", data={"token": token}, headers=basic(*client))
    assert response.status_code == 200
    return response.get_json()


def test_login_tokens_carry_their_session_id(http, app, client, alice) -> None:
    body = sign_in(http, client)
    claims = TokenVerifier(ISSUER, ISSUER, _local_jwks(app)).verify(body["access_token"]).claims
    with app.app_context():
        row = db.session.query(RefreshToken).one()
    assert claims["sid"] == row.family_id
    renewed = refresh(http, client, body["refresh_token"]).get_json()
    renewed_claims = TokenVerifier(ISSUER, ISSUER, _local_jwks(app)).verify(renewed["access_token"])
    assert renewed_claims.claims["sid"] == row.family_id


def test_a_deleted_clients_tokens_no_longer_manage_users(http, app, admin) -> None:
    kept = {"Authorization": f"Bearer {client_token(http, app, scope=ALL_SCOPES)}"}
    doomed_token = client_token(http, app, scope=ALL_SCOPES)
    doomed = bearer(doomed_token)
    assert http.get("/users", headers=doomed).status_code == 200
    with app.app_context():
        client_id = TokenVerifier(ISSUER, ISSUER, _local_jwks(app)).verify(doomed_token)
        delete_client(client_id.claims["client_id"], runtime(app).revoker)
        db.session.commit()
    for response in (
        http.get("/users", headers=doomed),
        http.post("/users", json={"username": "mallory"}, headers=doomed),
    ):
        assert response.status_code == 401, response.get_json()
        assert response.mimetype == "application/problem+json"
    # Positive control: another client's token of the same tenant still works.
    assert http.post("/users", json={"username": "carol"}, headers=kept).status_code == 201
    assert http.get("/users", headers=kept).status_code == 200


def test_idp_clients_delete_kills_the_clients_tokens(http, app, run_idp) -> None:
    """The operator's path: ``idp clients delete`` in its own process, on every worker."""
    client_id, secret = register(app, auth_method="client_secret_basic", scope=ALL_SCOPES)
    kept = bearer(client_token(http, app, scope=ALL_SCOPES))
    form = {"grant_type": "client_credentials"}
    token = http.post("/oidc/token", data=form, headers=basic(client_id, secret)).get_json()
    doomed = bearer(token["access_token"])
    assert http.get("/users", headers=doomed).status_code == 200
    result = run_idp("clients", "delete", client_id)
    assert result.returncode == 0, result.stderr
    assert http.get("/users", headers=doomed).status_code == 401
    assert http.post("/users", json={"username": "m"}, headers=doomed).status_code == 401
    assert http.get("/users", headers=kept).status_code == 200


def test_a_deleted_clients_user_tokens_die_too(http, app, alice) -> None:
    doomed_client = password_client(app, scope="openid user:self user:read")
    other_client = password_client(app, scope="openid user:self user:read")
    doomed = sign_in(http, doomed_client)["access_token"]
    kept = sign_in(http, other_client)["access_token"]
    with app.app_context():
        delete_client(doomed_client[0], runtime(app).revoker)
        db.session.commit()
    assert http.get("/users/me", headers=bearer(doomed)).status_code == 401
    assert introspect(http, other_client, doomed) == {"active": False}
    assert_alive(http, other_client, kept)


def test_an_operator_lock_kills_live_tokens_a_bad_password_lock_does_not(
    http, app, client, alice, bob, admin
) -> None:
    alice_token = sign_in(http, client)["access_token"]
    bob_session = sign_in(http, client, "bob")
    assert_alive(http, client, alice_token)
    locked = http.post(f"/users/{alice}/lock", headers=admin)
    assert locked.status_code == 200 and locked.get_json()["locked"] is True
    assert_dead(http, client, alice_token)
    # Positive control: bob is locked by bad passwords; his session lives on.
    for _ in range(5):
        assert login(http, client, username="bob", password="Wrong-Password-1").status_code == 400
    assert login(http, client, username="bob").status_code == 400  # locked for passwords
    assert_alive(http, client, bob_session["access_token"])
    assert refresh(http, client, bob_session["refresh_token"]).status_code == 200
    # Unlocking does not bring the old token back, and a new login works.
    assert http.post(f"/users/{alice}/unlock", headers=admin).status_code == 200
    assert_dead(http, client, alice_token)
    assert_alive(http, client, sign_in(http, client)["access_token"])


def test_a_deleted_users_tokens_die(http, app, client, alice, bob, admin) -> None:
    alice_token = sign_in(http, client)["access_token"]
    bob_token = sign_in(http, client, "bob")["access_token"]
    assert http.delete(f"/users/{alice}", headers=admin).status_code == 204
    assert_dead(http, client, alice_token)
    assert_alive(http, client, bob_token)


def test_refresh_reuse_kills_the_familys_access_tokens(http, app, client, alice) -> None:
    first = sign_in(http, client)
    other_session = sign_in(http, client)
    second = refresh(http, client, first["refresh_token"]).get_json()
    assert_alive(http, client, second["access_token"])
    stolen = refresh(http, client, first["refresh_token"])  # reuse: the family is revoked
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_grant"
    assert_dead(http, client, first["access_token"])
    assert_dead(http, client, second["access_token"])
    # Positive control: another login of the same user is another family.
    assert_alive(http, client, other_session["access_token"])


def test_revoking_a_refresh_token_kills_its_sessions_access_tokens(http, client, alice) -> None:
    session = sign_in(http, client)
    other = sign_in(http, client)
    form = {"token": session["refresh_token"], "token_type_hint": "refresh_token"}
    assert http.post("/oidc/revoke", data=form, headers=basic(*client)).status_code == 200
    assert_dead(http, client, session["access_token"])
    assert_alive(http, client, other["access_token"])


def test_revoke_tokens_kills_access_tokens_and_a_login_right_after_works(
    http, app, client, alice, admin
) -> None:
    before = sign_in(http, client)["access_token"]
    revoked = http.post(f"/users/{alice}/revoke-tokens", headers=admin)
    assert revoked.status_code == 200 and revoked.get_json()["revoked"] == 1
    after = sign_in(http, client)["access_token"]
    assert_dead(http, client, before)
    assert_alive(http, client, after)


@pytest.mark.parametrize("how", ["reset", "change"])
def test_a_new_password_kills_earlier_access_tokens(http, app, client, alice, admin, how) -> None:
    before = sign_in(http, client)["access_token"]
    new_password = "Brand-New-Password-5"
    if how == "reset":
        response = http.put(
            f"/users/{alice}/password", json={"newPassword": new_password}, headers=admin
        )
    else:
        body = {"currentPassword": PASSWORD, "newPassword": new_password}
        response = http.put("/users/me/password", json=body, headers=bearer(before))
    assert response.status_code == 204, response.get_json()
    assert_dead(http, client, before)
    after = login(http, client, password=new_password, scope=USER_SCOPES).get_json()
    assert_alive(http, client, after["access_token"])


@pytest.mark.parametrize("which", ["runtime", "database"])
def test_revocation_is_exact_within_one_second(app, which) -> None:
    """A token issued a millisecond before a revocation is dead, one a millisecond after
    lives, though both carry the same whole-second ``iat``. Both the profile's store
    (Redis in production) and the database store under it (PostgreSQL or SQLite)."""
    with app.app_context():
        store = runtime(app).revocation_store
        if which == "database":
            store = DatabaseRevocationStore(db.engine)
        revoked_at = (int(time.time()) * 1000) + 500
        store.revoke(db.session, [Revocation("user:u-1", revoked_at, int(time.time()) + 60)])
        db.session.commit()
        verifier = TokenVerifier(ISSUER, ISSUER, _local_jwks(app), revocations=store)
        claims = {"jti": "j", "client_id": "c", "sub": "u-1", "iat": revoked_at // 1000}
        with pytest.raises(InvalidToken):
            verifier._check_not_revoked(claims | {"iat_ms": revoked_at - 1})
        with pytest.raises(InvalidToken):
            verifier._check_not_revoked(claims | {"iat_ms": revoked_at})
        verifier._check_not_revoked(claims | {"iat_ms": revoked_at + 1})
        # Another user's token of the same moment is untouched.
        verifier._check_not_revoked(claims | {"sub": "u-2", "iat_ms": revoked_at - 1})


def test_a_python_resource_server_sees_revocations_through_idp_verify(
    http, app, client, alice, admin
) -> None:
    token = sign_in(http, client)["access_token"]
    with app.app_context():
        store = runtime(app).revocation_store
        verifier = TokenVerifier(ISSUER, ISSUER, _local_jwks(app), revocations=store)
        assert verifier.verify(token).subject == alice
    assert http.post(f"/users/{alice}/revoke-tokens", headers=admin).status_code == 200
    with app.app_context(), pytest.raises(InvalidToken, match="revoked"):
        verifier.verify(token)


@pytest.mark.production_only
def test_revocations_survive_a_redis_restart_without_persistence(make_app, stoppable_redis) -> None:
    app = make_app(IDP_REDIS_URL=stoppable_redis.url())
    http = app.test_client()
    client = password_client(app, scope="openid user:self user:read")
    make_user(app, "alice", scope="user:read")
    revoked = sign_in(http, client)["access_token"]
    kept = sign_in(http, client)["access_token"]
    form = {"token": revoked, "token_type_hint": "access_token"}
    assert http.post("/oidc/revoke", data=form, headers=basic(*client)).status_code == 200
    assert_dead(http, client, revoked)
    # A Redis without persistence: nothing is written to disk on shutdown.
    stoppable_redis.client().config_set("save", "")
    stoppable_redis.client().config_set("appendonly", "no")
    stoppable_redis.stop()
    stoppable_redis.start()
    assert stoppable_redis.client().dbsize() == 0  # the restart forgot everything
    assert_dead(http, client, revoked)
    assert_alive(http, client, kept)


def _local_jwks(app) -> LocalJwks:
    ring = runtime(app).key_ring
    return LocalJwks(lambda: (ring.current().etag, ring.current().jwks_body))
