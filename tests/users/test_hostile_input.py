"""Characters no database can hold at the /users API.

NUL (PostgreSQL refuses it in text), lone surrogates (no UTF-8 encoding) and bytes that
are not UTF-8, in the bearer header, a body, a path or a query, get a 4xx problem+json
with nothing logged at ERROR; beside each, the same request with good values succeeds.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.users.conftest import client_token

JSON_TYPE = "application/json"
CHARACTERS = {"nul": "\x00", "high surrogate": "\ud800", "low surrogate": "\udfff"}
GOOD_USER = {
    "clientUserId": "ext-1",
    "username": "carol",
    "email": "carol@example.com",
    "password": "Sup3r-Secret!",
    "firstName": "Carol",
    "lastName": "Jones",
}


def assert_problem(response: Any, status: int, caplog: Any) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status
    return body


def post_json(http: FlaskClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    # json.dumps writes a lone surrogate as its \u escape, as a hostile client would.
    return http.post(path, data=json.dumps(body), content_type=JSON_TYPE, headers=headers)


@pytest.fixture
def token(http: FlaskClient, app: Any) -> str:
    return client_token(http, app)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda token: "\xff\xfe" + token,
        lambda token: token + "\x00",
        lambda token: token[:10] + "\x00" + token[10:],
        lambda token: token.replace(".", ".\xff", 1),
        lambda token: "\x00.\x00.\x00",
    ],
    ids=["leading bytes", "trailing nul", "nul inside", "bytes inside", "nul parts"],
)
def test_a_bearer_token_with_hostile_bytes_is_401(
    http: FlaskClient, token: str, spoil: Any, caplog: Any
) -> None:
    refused = http.get("/users", headers={"Authorization": f"Bearer {spoil(token)}"})
    assert_problem(refused, 401, caplog)
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    control = http.get("/users", headers={"Authorization": f"Bearer {token}"})
    assert control.status_code == 200


@pytest.mark.parametrize("char", list(CHARACTERS.values()), ids=list(CHARACTERS))
@pytest.mark.parametrize("field", [*GOOD_USER, "scopes"])
def test_unstorable_characters_in_a_new_user_are_400(
    http: FlaskClient, token: str, field: str, char: str, caplog: Any
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    good = GOOD_USER | {"scopes": ["user:self"]}
    spoiled = good | {field: ["user:" + char] if field == "scopes" else good[field] + char}
    body = assert_problem(post_json(http, "/users", spoiled, headers), 400, caplog)
    assert "the body is not valid JSON" in body["detail"] or field in body["detail"]
    control = post_json(http, "/users", good, headers)
    assert control.status_code == 201, control.get_json()


@pytest.mark.parametrize("char", list(CHARACTERS.values()), ids=list(CHARACTERS))
def test_unstorable_characters_in_changes_and_attributes_are_400(
    http: FlaskClient, token: str, char: str, caplog: Any
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    user_id = post_json(http, "/users", {"username": "dave"}, headers).get_json()["userId"]
    attribute = {"name": "tier", "type": "STRING", "value": "gold"}
    changes = [
        ("PATCH", f"/users/{user_id}", {"email": "dave@example.com"}, 200),
        ("PATCH", f"/users/{user_id}", {"firstName": "Dave"}, 200),
        ("PUT", f"/users/{user_id}/password", {"newPassword": "Sup3r-Secret!"}, 204),
        ("POST", f"/users/{user_id}/attributes", attribute, 201),
    ]
    for method, path, good, status in changes:
        for field, value in good.items():
            spoiled = good | {field: value + char}
            refused = http.open(
                path,
                method=method,
                data=json.dumps(spoiled),
                content_type=JSON_TYPE,
                headers=headers,
            )
            assert_problem(refused, 400, caplog)
        control = http.open(
            path, method=method, data=json.dumps(good), content_type=JSON_TYPE, headers=headers
        )
        assert control.status_code == status, (path, control.get_json())


@pytest.mark.parametrize("char", ["%00", "%ED%A0%80", "%FF%FE"], ids=["nul", "surrogate", "ff fe"])
def test_unstorable_characters_in_a_path_are_404(
    http: FlaskClient, token: str, char: str, caplog: Any
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    user_id = post_json(http, "/users", {"username": "erin"}, headers).get_json()["userId"]
    assert_problem(http.get(f"/users/{user_id}{char}", headers=headers), 404, caplog)
    refused = http.delete(f"/users/{user_id}/attributes/a{char}", headers=headers)
    assert_problem(refused, 404, caplog)
    assert http.get(f"/users/{user_id}", headers=headers).status_code == 200


def test_nul_in_a_query_is_400(http: FlaskClient, token: str, caplog: Any) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    assert_problem(http.get("/users?username=a%00b", headers=headers), 400, caplog)
    # Bytes that are not UTF-8 decode to U+FFFD, a name no user has: an empty page.
    for query in ("username=a%ED%A0%80b", "username=a%FFb", "username=ab"):
        listed = http.get(f"/users?{query}", headers=headers)
        assert listed.status_code == 200 and listed.get_json()["users"] == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
