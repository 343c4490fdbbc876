from __future__ import annotations

from typing import Any

import pytest

from tests.oauth.helpers import basic, login, make_user, password_client, register

ALL_SCOPES = "user:create user:read user:update user:delete"


def client_token(http: Any, app: Any, scope: str = ALL_SCOPES, tenant: str = "default") -> str:
    client_id, secret = register(app, auth_method="client_secret_basic", scope=scope, tenant=tenant)
    response = http.post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["access_token"]


@pytest.fixture
def admin(http, app) -> dict[str, str]:
    return {"Authorization": f"Bearer {client_token(http, app)}"}


@pytest.fixture
def self_token(http, app) -> tuple[str, dict[str, str]]:
    return make_self_token(http, app, "selfie")


def make_self_token(http, app, username: str) -> tuple[str, dict[str, str]]:
    """A new user signed in with ``user:self``: its id and the bearer header of its token."""
    password = "Selfie-Password-1"
    user_id = make_user(app, username, password=password)
    client = password_client(app, scope="openid user:self")
    token = login(http, client, username=username, password=password).get_json()
    return user_id, {"Authorization": f"Bearer {token['access_token']}"}
