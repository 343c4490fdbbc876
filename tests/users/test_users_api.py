"""Every /users route and scope, tenant isolation, errors."""

from __future__ import annotations

import re

import pytest

from idp.models import AuditEvent, db
from idp.registrations.tenants import create_tenant
from tests.oauth.helpers import basic, login, password_client, refresh, register
from tests.users.conftest import client_token

USER_FIELDS = {
    "userId", "clientUserId", "clientId", "tenant", "username", "email", "firstName", "lastName",
    "provider", "scopes", "userType",
    "managedBy", "createdAt", "updatedAt", "lastAccessed", "deletedAt", "locked",
}  # fmt: skip
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
GOOD_PASSWORD = "Sup3r-Secret!"


def create(http, headers, **body):
    return http.post("/users", json=body, headers=headers)


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and "detail" in body
    return body


def test_create_returns_201_with_the_spec_fields(http, admin) -> None:
    response = create(
        http, admin, username="carol", clientUserId="ext-1", email="carol@example.com",
        password=GOOD_PASSWORD, scopes=["user:self"],
    )  # fmt: skip
    assert response.status_code == 201, response.get_json()
    user = response.get_json()
    assert set(user) == USER_FIELDS
    assert user["username"] == "carol" and user["clientUserId"] == "ext-1"
    assert user["tenant"] == "default" and user["scopes"] == ["user:self"]
    assert user["locked"] is False and user["deletedAt"] is None
    assert RFC3339.match(user["createdAt"]) and RFC3339.match(user["updatedAt"])
    assert GOOD_PASSWORD not in response.get_data(as_text=True)


def test_duplicates_are_409(http, admin) -> None:
    assert create(http, admin, username="dup", clientUserId="c-1").status_code == 201
    assert_problem(create(http, admin, username="dup"), 409)
    assert_problem(create(http, admin, username="other", clientUserId="c-1"), 409)


def test_list_with_pagination_and_filters(http, admin) -> None:
    for index in range(5):
        create(http, admin, username=f"u{index}", email=f"u{index}@example.com",
               clientUserId=f"cu{index}")  # fmt: skip
    page = http.get("/users?limit=2&offset=1", headers=admin).get_json()
    assert page["limit"] == 2 and page["offset"] == 1 and page["total"] == 5
    assert [u["username"] for u in page["users"]] == ["u1", "u2"]
    default = http.get("/users", headers=admin).get_json()
    assert default["limit"] == 50 and len(default["users"]) == 5
    for query, expected in (
        ("username=u3", ["u3"]),
        ("email=u4@example.com", ["u4"]),
        ("clientUserId=cu0", ["u0"]),
        ("locked=false", ["u0", "u1", "u2", "u3", "u4"]),
        ("locked=true", []),
    ):
        body = http.get(f"/users?{query}", headers=admin).get_json()
        assert [u["username"] for u in body["users"]] == expected, query
        assert body["total"] == len(expected)
    user_id = http.get("/users?username=u2", headers=admin).get_json()["users"][0]["userId"]
    http.post(f"/users/{user_id}/lock", headers=admin)
    locked = http.get("/users?locked=true", headers=admin).get_json()
    assert [u["username"] for u in locked["users"]] == ["u2"]


BAD_QUERIES = [
    "limit=0", "limit=201", "limit=abc", "offset=-1", "bogus=1", "limit=5&limit=6",
    "locked=maybe", "username=a%00b",
]  # fmt: skip


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_list_queries_are_400(http, admin, query) -> None:
    assert_problem(http.get(f"/users?{query}", headers=admin), 400)


def test_malformed_user_ids_are_404(http, admin) -> None:
    for user_id in ("not-a-uuid", "%00", "x" * 60, "00000000-0000-0000-0000-000000000000"):
        assert_problem(http.get(f"/users/{user_id}", headers=admin), 404)


def test_get_and_patch(http, admin) -> None:
    user = create(http, admin, username="pat", email="old@example.com").get_json()
    fetched = http.get(f"/users/{user['userId']}", headers=admin)
    assert fetched.status_code == 200 and fetched.get_json() == user
    patched = http.patch(
        f"/users/{user['userId']}",
        json={"email": "new@example.com", "scopes": ["user:read", "openid"], "clientUserId": "x-9"},
        headers=admin,
    )
    assert patched.status_code == 200
    body = patched.get_json()
    assert (body["email"], body["scopes"], body["clientUserId"]) == (
        "new@example.com", ["user:read", "openid"], "x-9",
    )  # fmt: skip
    assert body["updatedAt"] >= user["updatedAt"]


def test_delete_is_soft_and_kills_refresh_tokens(http, app, admin) -> None:
    user = create(http, admin, username="gone", password=GOOD_PASSWORD).get_json()
    client = password_client(app, scope="openid user:self")
    session = login(http, client, username="gone", password=GOOD_PASSWORD).get_json()
    response = http.delete(f"/users/{user['userId']}", headers=admin)
    assert response.status_code == 204 and response.data == b""
    assert_problem(http.get(f"/users/{user['userId']}", headers=admin), 404)
    assert refresh(http, client, session["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert http.get("/users?username=gone", headers=admin).get_json()["total"] == 0
    # The name is free again once its holder is deleted.
    assert create(http, admin, username="gone").status_code == 201


def test_password_reset(http, app, admin) -> None:
    user = create(http, admin, username="reset", password=GOOD_PASSWORD).get_json()
    client = password_client(app, scope="openid user:self")
    session = login(http, client, username="reset", password=GOOD_PASSWORD).get_json()
    response = http.put(
        f"/users/{user['userId']}/password", json={"newPassword": "Brand-New-Pass-2"},
        headers=admin,
    )  # fmt: skip
    assert response.status_code == 204
    assert login(http, client, username="reset", password=GOOD_PASSWORD).status_code == 400
    assert login(http, client, username="reset", password="Brand-New-Pass-2").status_code == 200
    assert refresh(http, client, session["refresh_token"]).get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("weak", ["short1!A", "alllowercase10", "NoDigitsHere!", "x" * 513])
def test_weak_password_is_400_problem(http, admin, weak) -> None:
    body = assert_problem(create(http, admin, username="weak", password=weak), 400)
    assert "password" in body["detail"]
    assert weak not in str(body)


def test_lock_unlock_and_status(http, app, admin) -> None:
    user = create(http, admin, username="lockme", password=GOOD_PASSWORD).get_json()
    client = password_client(app, scope="openid user:self")
    login(http, client, username="lockme", password="Wrong-Password-1")
    status = http.get(f"/users/{user['userId']}/lock-status", headers=admin).get_json()
    assert status == {
        "username": "lockme", "locked": False, "badAttemptsSinceLastSuccessOrReset": 1,
        "lastFailureDate": status["lastFailureDate"],
    }  # fmt: skip
    assert RFC3339.match(status["lastFailureDate"])
    locked = http.post(f"/users/{user['userId']}/lock", headers=admin)
    assert locked.status_code == 200 and locked.get_json()["locked"] is True
    assert login(http, client, username="lockme", password=GOOD_PASSWORD).status_code == 400
    assert http.get(f"/users/{user['userId']}", headers=admin).get_json()["locked"] is True
    unlocked = http.post(f"/users/{user['userId']}/unlock", headers=admin).get_json()
    assert unlocked["locked"] is False and unlocked["badAttemptsSinceLastSuccessOrReset"] == 0
    assert login(http, client, username="lockme", password=GOOD_PASSWORD).status_code == 200


def test_revoke_tokens_returns_the_count(http, app, admin) -> None:
    user = create(http, admin, username="sessions", password=GOOD_PASSWORD).get_json()
    client = password_client(app, scope="openid user:self")
    first = login(http, client, username="sessions", password=GOOD_PASSWORD).get_json()
    login(http, client, username="sessions", password=GOOD_PASSWORD)
    response = http.post(f"/users/{user['userId']}/revoke-tokens", headers=admin)
    assert response.status_code == 200 and response.get_json() == {"revoked": 2}
    assert refresh(http, client, first["refresh_token"]).status_code == 400
    again = http.post(f"/users/{user['userId']}/revoke-tokens", headers=admin)
    assert again.get_json() == {"revoked": 0}


def test_me_and_own_password_change(http, app, self_token) -> None:
    user_id, headers = self_token
    me = http.get("/users/me", headers=headers)
    assert me.status_code == 200 and me.get_json()["userId"] == user_id
    wrong = http.put(
        "/users/me/password",
        json={"currentPassword": "not-it", "newPassword": "Another-Pass-3"},
        headers=headers,
    )
    assert_problem(wrong, 403)
    changed = http.put(
        "/users/me/password",
        json={"currentPassword": "Selfie-Password-1", "newPassword": "Another-Pass-3"},
        headers=headers,
    )
    assert changed.status_code == 204
    client = password_client(app, scope="openid user:self")
    assert login(http, client, username="selfie", password="Another-Pass-3").status_code == 200


def test_client_token_cannot_use_me(http, admin, app) -> None:
    token = client_token(http, app, scope="user:self")
    assert_problem(http.get("/users/me", headers={"Authorization": f"Bearer {token}"}), 403)


def test_other_tenant_users_are_404(http, app, admin) -> None:
    user = create(http, admin, username="home").get_json()
    with app.app_context():
        create_tenant("acme")
        db.session.commit()
    outsider = {"Authorization": f"Bearer {client_token(http, app, tenant='acme')}"}
    for method, path in (
        ("get", f"/users/{user['userId']}"),
        ("patch", f"/users/{user['userId']}"),
        ("delete", f"/users/{user['userId']}"),
        ("post", f"/users/{user['userId']}/lock"),
        ("get", f"/users/{user['userId']}/lock-status"),
        ("post", f"/users/{user['userId']}/revoke-tokens"),
    ):
        kwargs = {"json": {}} if method == "patch" else {}
        assert_problem(getattr(http, method)(path, headers=outsider, **kwargs), 404)
    assert http.get("/users", headers=outsider).get_json()["total"] == 0
    assert create(http, outsider, username="home").status_code == 201  # per-tenant names


def test_no_token_is_401_with_a_bearer_challenge(http) -> None:
    response = http.get("/users")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    bad = http.get("/users", headers={"Authorization": "Bearer not.a.token"})
    assert_problem(bad, 401)
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("post", "/users", "user:read"),
        ("get", "/users", "user:create"),
        ("patch", "/users/x", "user:read"),
        ("delete", "/users/x", "user:update"),
        ("put", "/users/x/password", "user:read"),
        ("post", "/users/x/lock", "user:read"),
        ("get", "/users/x/lock-status", "user:update"),
        ("post", "/users/x/revoke-tokens", "user:read"),
        ("get", "/users/me", "user:read"),
    ],
)
def test_wrong_scope_is_403_insufficient_scope(http, app, method, path, scope) -> None:
    headers = {"Authorization": f"Bearer {client_token(http, app, scope=scope)}"}
    response = getattr(http, method)(path, headers=headers, json={})
    assert_problem(response, 403)
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_a_revoked_access_token_is_401(http, app) -> None:
    client_id, secret = register(app, auth_method="client_secret_basic", scope="user:read")
    token = http.post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    ).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get("/users", headers=headers).status_code == 200
    http.post("/oidc/revoke", data={"token": token}, headers=basic(client_id, secret))
    assert_problem(http.get("/users", headers=headers), 401)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"string"',
        b'{"username": 5}',
        b'{"username": "x", "isAdmin": true}',
        b'{"scopes": "not-a-list"}',
        b'{"username": "' + b"x" * 300 + b'"}',
        b'{"email": "no-at-sign"}',
        b'{"scopes": ["has space"]}',
        b"\xff\xfe",
        b'{"username": "nul\\u0000byte"}',
        b'{"email": "a\\u0000@b.c"}',
        b'{"clientUserId": "\\u0001"}',
        b'{"username": "lone\\ud800surrogate"}',
    ],
)
def test_malformed_bodies_are_400(http, admin, body) -> None:
    response = http.post("/users", data=body, content_type="application/json", headers=admin)
    assert_problem(response, 400)


def test_non_json_body_is_415_and_huge_body_is_413(http, admin) -> None:
    assert_problem(http.post("/users", data="username=x", headers=admin,
                             content_type="application/x-www-form-urlencoded"), 415)  # fmt: skip
    huge = b'{"username": "' + b"x" * 70_000 + b'"}'
    response = http.post("/users", data=huge, content_type="application/json", headers=admin)
    assert_problem(response, 413)


def test_audit_events_for_user_changes(http, app, admin) -> None:
    user = create(http, admin, username="audited", password=GOOD_PASSWORD).get_json()
    user_id = user["userId"]
    http.patch(f"/users/{user_id}", json={"email": "a@b.c"}, headers=admin)
    http.put(f"/users/{user_id}/password", json={"newPassword": "Another-Pass-4"}, headers=admin)
    http.post(f"/users/{user_id}/lock", headers=admin)
    http.post(f"/users/{user_id}/unlock", headers=admin)
    http.post(f"/users/{user_id}/revoke-tokens", headers=admin)
    http.delete(f"/users/{user_id}", headers=admin)
    with app.app_context():
        events = [
            e.event
            for e in db.session.query(AuditEvent).filter_by(user_id=user_id).order_by(AuditEvent.id)
        ]
        details = " ".join(str(e.detail) for e in db.session.query(AuditEvent).all())
    assert events == [
        "user_created", "user_updated", "password_reset", "user_locked", "user_unlocked",
        "tokens_revoked", "user_deleted",
    ]  # fmt: skip
    assert GOOD_PASSWORD not in details and "Another-Pass-4" not in details


def test_a_failure_midway_leaves_nothing_half_written(http, app, admin, monkeypatch) -> None:
    from idp.users import service

    user = create(http, admin, username="atomic", password=GOOD_PASSWORD).get_json()

    def broken(*_args, **_kwargs):
        raise RuntimeError("storage failed midway")

    monkeypatch.setattr(service, "revoke_user_tokens", broken)
    for method, path, body in (
        ("delete", f"/users/{user['userId']}", None),
        ("put", f"/users/{user['userId']}/password", {"newPassword": "Brand-New-Pass-5"}),
    ):
        response = getattr(http, method)(path, json=body, headers=admin)
        assert response.status_code == 500
        assert response.mimetype == "application/problem+json"
    monkeypatch.setattr(service.audit, "record", broken)
    assert create(http, admin, username="never-made", password=GOOD_PASSWORD).status_code == 500
    assert http.post(f"/users/{user['userId']}/lock", headers=admin).status_code == 500

    monkeypatch.undo()
    still = http.get(f"/users/{user['userId']}", headers=admin)
    assert still.status_code == 200 and still.get_json()["locked"] is False
    assert http.get("/users?username=never-made", headers=admin).get_json()["total"] == 0
    client = password_client(app, scope="openid user:self")
    assert login(http, client, username="atomic", password=GOOD_PASSWORD).status_code == 200
