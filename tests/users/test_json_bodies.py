"""JSON bodies of the /users API read one way only: a member named twice is refused
(RFC 8259 §4 leaves its meaning to the reader, and pydantic would keep the last), and a
body nested beyond the parser is malformed like any other; both 400 problem+json.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.users.conftest import client_token

JSON_TYPE = "application/json"


def assert_problem(response: Any, status: int, caplog: Any) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status
    return body


@pytest.fixture
def token(http: FlaskClient, app: Any) -> str:
    return client_token(http, app)


@pytest.mark.parametrize("name", ["username", "password", "scopes"])
def test_a_member_named_twice_is_400(http: FlaskClient, token: str, name: str, caplog: Any) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    good = {"username": "frank", "password": "Sup3r-Secret!", "scopes": ["user:self"]}
    members = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in good.items()]
    twice = "{" + ", ".join([*members, f"{json.dumps(name)}: {json.dumps(good[name])}"]) + "}"
    refused = http.post("/users", data=twice, content_type=JSON_TYPE, headers=headers)
    body = assert_problem(refused, 400, caplog)
    assert body["detail"] == f"body member '{name}' is given more than once"
    control = http.post(
        "/users", data="{" + ", ".join(members) + "}", content_type=JSON_TYPE, headers=headers
    )
    assert control.status_code == 201, control.get_json()


def test_a_body_nested_beyond_the_parser_is_400(http: FlaskClient, token: str, caplog: Any) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for body in (b"[" * 10_000, b'{"username": ' + b"[" * 10_000):
        refused = http.post("/users", data=body, content_type=JSON_TYPE, headers=headers)
        assert assert_problem(refused, 400, caplog)["detail"] == "the body is not valid JSON"
    control = http.post("/users", json={"username": "grace"}, headers=headers)
    assert control.status_code == 201
