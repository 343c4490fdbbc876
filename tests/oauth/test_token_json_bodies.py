"""JSON token bodies (IDP_TOKEN_JSON_BODIES) read one way only: a body too deeply nested
for the parser is malformed like any other, and a parameter named twice is refused as
in a form (RFC 8259 §4 leaves repeated names to the reader; RFC 6749 §3.2 forbids them).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask

from tests.oauth.helpers import register

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


@pytest.fixture
def json_app(make_app: Any) -> Flask:
    return make_app(IDP_TOKEN_JSON_BODIES="true")


@pytest.fixture
def secret_post(json_app: Flask) -> dict[str, str]:
    client_id, secret = register(json_app, auth_method="client_secret_post")
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def assert_invalid_request(response: Any, caplog: Any) -> dict[str, str]:
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == "invalid_request" and set(body) == {"error", "error_description"}
    assert response.headers["Cache-Control"] == "no-store"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    return body


@pytest.mark.parametrize(
    "body",
    [b"[" * 10_000, b'{"a":' * 10_000, b'{"grant_type": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"],
    ids=["arrays", "objects", "inside a parameter"],
)
def test_a_body_nested_beyond_the_parser_is_invalid_request(
    json_app: Flask, secret_post: dict[str, str], body: bytes, caplog: Any
) -> None:
    http = json_app.test_client()
    assert len(body) >= 10_000
    refused = http.post("/oidc/token", data=body, content_type=JSON_TYPE)
    assert_invalid_request(refused, caplog)
    control = http.post("/oidc/token", data=json.dumps(secret_post), content_type=JSON_TYPE)
    assert control.status_code == 200, control.get_json()


@pytest.mark.parametrize("name", ["scope", "grant_type", "client_secret"])
def test_a_parameter_named_twice_is_refused_as_in_a_form(
    json_app: Flask, secret_post: dict[str, str], name: str, caplog: Any
) -> None:
    http = json_app.test_client()
    params = secret_post | {"scope": "user:read"}
    members = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in params.items()]
    twice = "{" + ", ".join([*members, f"{json.dumps(name)}: {json.dumps(params[name])}"]) + "}"
    refused = http.post("/oidc/token", data=twice, content_type=JSON_TYPE)
    description = assert_invalid_request(refused, caplog)["error_description"]
    assert description == f"parameter '{name}' is given more than once"

    # The same duplicate in a form gets the same answer.
    form = urlencode([*params.items(), (name, params[name])])
    in_form = http.post("/oidc/token", data=form, content_type=FORM_TYPE)
    assert assert_invalid_request(in_form, caplog)["error_description"] == description

    control = http.post("/oidc/token", data="{" + ", ".join(members) + "}", content_type=JSON_TYPE)
    assert control.status_code == 200, control.get_json()
    assert control.get_json()["scope"] == "user:read"
