"""RFC 7009 revocation and RFC 7662 introspection."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from freezegun import freeze_time

from idp import registry
from idp.models import db
from idp.registrations.tenants import create_tenant
from tests.oauth.helpers import (
    assertion,
    assertion_form,
    basic,
    client_key,
    login,
    make_user,
    password_client,
    refresh,
    register,
)


@pytest.fixture
def client(app):
    return password_client(app, scope="openid user:self user:read")


@pytest.fixture
def tokens(http, app, client):
    make_user(app, "alice", scope="user:read")
    return login(http, client, scope="openid user:read").get_json()


def revoke(http, client, token, hint=None):
    form = {"token": token} | ({"token_type_hint": hint} if hint else {})
    return http.post("/oidc/revoke", data=form, headers=basic(*client))


def introspect(http, client, token):
    response = http.post("/oidc/introspect", data={"token": token}, headers=basic(*client))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def test_introspection_of_a_live_access_token(http, client, tokens) -> None:
    body = introspect(http, client, tokens["access_token"])
    assert body["active"] is True
    assert body["scope"] == "openid user:read"
    assert body["client_id"] == client[0]
    assert body["username"] == "alice"
    assert body["token_type"] == "Bearer"
    assert body["iss"] == "http://127.0.0.1:8000" and body["aud"] == "http://127.0.0.1:8000"
    for claim in ("sub", "exp", "iat", "jti"):
        assert claim in body
    assert body["exp"] > time.time()


def test_introspection_of_a_live_refresh_token(http, client, tokens) -> None:
    body = introspect(http, client, tokens["refresh_token"])
    assert body["active"] is True and body["token_type"] == "refresh_token"
    assert body["username"] == "alice" and body["client_id"] == client[0]


@pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "x" * 9000])
def test_introspection_of_garbage_is_inactive(http, client, garbage) -> None:
    response = http.post("/oidc/introspect", data={"token": garbage}, headers=basic(*client))
    assert response.status_code == 200 and response.get_json() == {"active": False}


def test_introspection_of_an_expired_token_is_inactive(make_app) -> None:
    app = make_app(IDP_CLOCK_SKEW="0")
    http = app.test_client()
    client = password_client(app, access_token_ttl=60)
    make_user(app, "bob")
    token = login(http, client, username="bob").get_json()["access_token"]
    assert introspect(http, client, token)["active"] is True
    with freeze_time(timedelta(seconds=61)):
        assert introspect(http, client, token) == {"active": False}


def test_other_tenant_tokens_are_inactive(http, app, tokens) -> None:
    with app.app_context():
        create_tenant("acme")
        db.session.commit()
    outsider = register(app, auth_method="client_secret_basic", tenant="acme")
    assert introspect(http, outsider, tokens["access_token"]) == {"active": False}
    assert introspect(http, outsider, tokens["refresh_token"]) == {"active": False}


def test_revoked_access_token_is_inactive_and_refused_by_userinfo(http, client, tokens) -> None:
    access = tokens["access_token"]
    assert (
        http.get("/oidc/userinfo", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    )
    response = revoke(http, client, access, "access_token")
    assert response.status_code == 200
    assert introspect(http, client, access) == {"active": False}
    refused = http.get("/oidc/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert refused.status_code == 401


def test_revoked_refresh_token_fails_and_takes_its_family(http, client, tokens) -> None:
    rotated = refresh(http, client, tokens["refresh_token"]).get_json()["refresh_token"]
    assert revoke(http, client, rotated).status_code == 200
    assert refresh(http, client, rotated).get_json()["error"] == "invalid_grant"
    assert introspect(http, client, rotated) == {"active": False}


def test_unknown_token_revocation_is_200(http, client) -> None:
    response = revoke(http, client, "never-issued")
    assert response.status_code == 200


def test_a_client_cannot_revoke_another_clients_token(http, app, client, tokens) -> None:
    other = password_client(app)
    assert revoke(http, other, tokens["refresh_token"]).status_code == 200
    assert refresh(http, client, tokens["refresh_token"]).status_code == 200


def test_revoke_and_introspect_require_client_authentication(http, tokens) -> None:
    for path in ("/oidc/revoke", "/oidc/introspect"):
        response = http.post(path, data={"token": tokens["access_token"]})
        assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
        wrong = http.post(path, data={"token": "x"}, headers=basic("nobody", "secret"))
        assert wrong.status_code == 401


def test_missing_token_is_invalid_request(http, client) -> None:
    response = http.post(
        "/oidc/revoke", data={"token_type_hint": "access_token"}, headers=basic(*client)
    )
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_private_key_jwt_clients_can_introspect(http, app, tokens) -> None:
    key = client_key()
    client_id, _ = register(app, key=key)
    form = assertion_form(assertion(key, client_id), token=tokens["access_token"])
    del form["grant_type"]
    response = http.post("/oidc/introspect", data=form)
    assert response.status_code == 200 and response.get_json()["active"] is True


def test_client_credentials_token_introspection(http, app) -> None:
    client_id, secret = register(app, auth_method="client_secret_basic")
    token = http.post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    ).get_json()["access_token"]
    body = introspect(http, (client_id, secret), token)
    assert body["active"] is True and body["sub"] == client_id and "username" not in body


def test_discovery_advertises_revocation_introspection_userinfo(http) -> None:
    body = http.get("/.well-known/oauth-authorization-server").get_json()
    assert body["revocation_endpoint"] == "http://127.0.0.1:8000/oidc/revoke"
    assert body["introspection_endpoint"] == "http://127.0.0.1:8000/oidc/introspect"
    assert body["userinfo_endpoint"] == "http://127.0.0.1:8000/oidc/userinfo"
    assert body["grant_types_supported"] == list(registry.GRANT_TYPES)
