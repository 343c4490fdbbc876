"""Each rule of idp.users.policy driven through several surfaces, beside a positive control:
a rule written once must answer the same wherever a client meets it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ISSUER
from tests.oauth.helpers import (
    assertion,
    basic,
    client_key,
    login,
    make_user,
    password_client,
    refresh,
    register,
    trust_issuer,
)
from tests.users.conftest import ALL_SCOPES, client_token

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
UPSTREAM = "https://upstream.example.net"
GRANTS = ["client_credentials", "password", "refresh_token", JWT_BEARER]
CLIENT_SCOPE = "openid user:self user:read user:create"
PASSWORD = "Policy-Password-1"
NEW_PASSWORD = "Policy-Password-2"


class Surfaces:
    """One client that may use every grant, and the ways it signs a user in."""

    def __init__(self, app: Any, http: Any) -> None:
        self.app, self.http = app, http
        self.client = register(
            app, auth_method="client_secret_basic", grant_types=GRANTS, scope=CLIENT_SCOPE
        )
        self.issuer_key = client_key("ES256")
        trust_issuer(app, self.issuer_key, UPSTREAM, provision=True, scope="openid user:read")

    def token(self, **form: str) -> Any:
        return self.http.post("/oidc/token", data=form, headers=basic(*self.client))

    def client_credentials(self, **extra: str) -> Any:
        return self.token(grant_type="client_credentials", **extra)

    def jwt_bearer(self, subject: str, **extra: str) -> Any:
        signed = assertion(self.issuer_key, UPSTREAM, iss=UPSTREAM, sub=subject, aud=ISSUER)
        return self.token(grant_type=JWT_BEARER, assertion=signed, **extra)

    def api_user(self, username: str, scopes: list[str]) -> str:
        """A user the client creates through /users, as client_credentials ``sub`` needs."""
        created = self.http.post(
            "/users",
            json={"username": username, "password": PASSWORD, "scopes": scopes},
            headers=self.client_bearer(scope="user:create"),
        )
        assert created.status_code == 201, created.get_json()
        return created.get_json()["userId"]

    def client_bearer(self, **extra: str) -> dict[str, str]:
        answer = self.client_credentials(**extra)
        assert answer.status_code == 200, answer.get_json()
        return {"Authorization": f"Bearer {answer.get_json()['access_token']}"}


@pytest.fixture
def surfaces(app, http) -> Surfaces:
    return Surfaces(app, http)


def _granted(answer: Any) -> set[str]:
    assert answer.status_code == 200, answer.get_json()
    return set(answer.get_json()["scope"].split())


def _error(answer: Any, status: int, code: str) -> None:
    assert answer.status_code == status, answer.get_json()
    assert answer.get_json()["error"] == code


# -- which scopes a principal may get ------------------------------------------------------


def test_a_scope_beyond_the_principal_is_refused_at_every_grant(surfaces) -> None:
    user_id = surfaces.api_user("scoped", ["user:read"])
    # Positive controls: what lies within is granted as asked.
    assert _granted(surfaces.client_credentials(scope="user:create")) == {"user:create"}
    signed_in = surfaces.token(
        grant_type="password", username="scoped", password=PASSWORD, scope="user:read openid"
    )
    assert _granted(signed_in) == {"user:read", "openid"}
    assert _granted(surfaces.client_credentials(sub=user_id, scope="user:read")) == {"user:read"}
    assert _granted(surfaces.jwt_bearer("upstream-1", scope="user:read")) == {"user:read"}
    # Beyond the client, beyond the user, beyond the issuer's cap: refused, never dropped.
    _error(surfaces.client_credentials(scope="user:create user:delete"), 400, "invalid_scope")
    _error(
        surfaces.token(grant_type="password", username="scoped", password=PASSWORD,
                       scope="user:read user:create"),
        400, "invalid_scope",
    )  # fmt: skip
    _error(surfaces.client_credentials(sub=user_id, scope="user:create"), 400, "invalid_scope")
    _error(surfaces.jwt_bearer("upstream-1", scope="user:create"), 400, "invalid_scope")


def test_no_scope_requested_is_everything_the_principal_may_get(surfaces) -> None:
    user_id = surfaces.api_user("unasked", ["user:read"])
    assert _granted(surfaces.client_credentials()) == set(CLIENT_SCOPE.split())
    # The user's scopes plus the base scopes, within the client's.
    assert _granted(surfaces.client_credentials(sub=user_id)) == {
        "openid",
        "user:self",
        "user:read",
    }
    # The issuer's cap as well.
    assert _granted(surfaces.jwt_bearer("upstream-2")) == {"openid", "user:read"}


def test_a_refresh_drops_a_scope_the_user_lost_and_the_api_refuses_to_hand_one_out(
    app, http, surfaces
) -> None:
    user_id = surfaces.api_user("lossy", ["user:read"])
    first = surfaces.token(grant_type="password", username="lossy", password=PASSWORD)
    assert _granted(first) == {"openid", "user:self", "user:read"}
    admin = {"Authorization": f"Bearer {client_token(http, app, scope=ALL_SCOPES)}"}
    patched = http.patch(f"/users/{user_id}", json={"scopes": []}, headers=admin)
    assert patched.status_code == 200, patched.get_json()
    renewed = refresh(http, surfaces.client, first.get_json()["refresh_token"])
    assert _granted(renewed) == {"openid", "user:self"}
    # The users API: a caller hands out only what it holds (plus the base scopes).
    held = http.post(
        "/users", json={"username": "given", "scopes": ["user:read", "openid"]}, headers=admin
    )
    assert held.status_code == 201, held.get_json()
    beyond = http.post(
        "/users", json={"username": "overgiven", "scopes": ["user:lock"]}, headers=admin
    )
    assert beyond.status_code == 403, beyond.get_json()
    assert beyond.get_json()["errors"] == [
        {"field": "scopes", "message": "not held by the caller: user:lock"}
    ]


# -- may this user sign in, may the session go on ------------------------------------------


def test_an_operator_lock_refuses_every_grant_and_an_unlock_restores_them(
    app, http, surfaces
) -> None:
    admin = {"Authorization": f"Bearer {client_token(http, app, scope=ALL_SCOPES)}"}
    user_id = surfaces.api_user("barred", ["user:read"])
    assert surfaces.jwt_bearer("upstream-3").status_code == 200  # provisions the user
    linked_id = _subject(http, admin, "upstream-3")
    session = surfaces.token(grant_type="password", username="barred", password=PASSWORD)

    def sign_ins() -> list[Any]:
        return [
            surfaces.token(grant_type="password", username="barred", password=PASSWORD),
            surfaces.client_credentials(sub=user_id),
            surfaces.jwt_bearer("upstream-3"),
        ]

    for answer in sign_ins():  # positive control
        assert answer.status_code == 200, answer.get_json()
    for target in (user_id, linked_id):
        assert http.post(f"/users/{target}/lock", headers=admin).status_code == 200
    for answer in sign_ins():
        _error(answer, 400, "invalid_grant")
    # An operator's lock also ends the session a refresh would continue.
    _error(
        refresh(http, surfaces.client, session.get_json()["refresh_token"]), 400, "invalid_grant"
    )
    for target in (user_id, linked_id):
        assert http.post(f"/users/{target}/unlock", headers=admin).status_code == 200
    for answer in sign_ins():
        assert answer.status_code == 200, answer.get_json()


def _subject(http: Any, admin: dict[str, str], username: str) -> str:
    listed = http.get(f"/users?username={username}", headers=admin).get_json()["users"]
    assert len(listed) == 1, listed
    return str(listed[0]["userId"])


# -- is this password right (with the lockout) ---------------------------------------------


def test_wrong_passwords_count_together_at_the_grant_and_the_password_change(
    make_app,
) -> None:
    app = make_app(IDP_LOCKOUT_THRESHOLD="4")
    http = app.test_client()
    user_id = make_user(app, "guessed", password=PASSWORD)
    client = password_client(app, scope="openid user:self")
    session = login(http, client, "guessed", PASSWORD)
    assert session.status_code == 200, session.get_json()
    me = {"Authorization": f"Bearer {session.get_json()['access_token']}"}

    def change(current: str) -> Any:
        body = {"currentPassword": current, "newPassword": NEW_PASSWORD}
        return http.put("/users/me/password", json=body, headers=me)

    for attempt in range(4):  # two wrong at each surface reach the threshold of four
        if attempt % 2:
            _error(login(http, client, "guessed", "Wrong-Password-1"), 400, "invalid_grant")
        else:
            assert change("Wrong-Password-1").status_code == 403
    # Locked by bad passwords: the right password is refused at both surfaces now.
    _error(login(http, client, "guessed", PASSWORD), 400, "invalid_grant")
    assert change(PASSWORD).status_code == 403
    # Positive control: unlocked, the same password is taken at both.
    admin = {"Authorization": f"Bearer {client_token(http, app, scope=ALL_SCOPES)}"}
    assert http.post(f"/users/{user_id}/unlock", headers=admin).status_code == 200
    assert change(PASSWORD).status_code == 204
    assert login(http, client, "guessed", NEW_PASSWORD).status_code == 200
