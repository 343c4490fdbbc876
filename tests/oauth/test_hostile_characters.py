"""Characters no database can hold at the OAuth endpoints: NUL (PostgreSQL refuses it in
text), lone surrogates (no UTF-8 encoding exists) and bytes that are not UTF-8.

Each attack gets the answer a wrong value gets, in RFC 6749 form, with nothing logged at
ERROR; beside it, the same request with the good value succeeds.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jws

from tests.conftest import ISSUER
from tests.oauth.helpers import (
    ASSERTION_TYPE,
    PASSWORD,
    TOKEN_URL,
    assertion,
    assertion_form,
    basic,
    client_key,
    login,
    make_user,
    password_client,
    register,
    trust_issuer,
    unsigned,
)

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DAUTH = "https://dauth.example.net"
ENDPOINTS = ["/oidc/token", "/oidc/introspect", "/oidc/revoke"]
FORM_TYPE = "application/x-www-form-urlencoded"


def assert_refused(response: Any, status: int, error: str, caplog: Any) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == error, body
    assert set(body) <= {"error", "error_description"}
    assert response.headers["Cache-Control"] == "no-store"
    assert_nothing_logged(caplog)


def assert_nothing_logged(caplog: Any) -> None:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def basic_header(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def escaped_assertion(key: Any, issuer: str, **claims: str) -> str:
    """A signed assertion whose payload json.dumps wrote: a lone surrogate travels as its
    \\u escape, as a hostile client would send it (joserfc refuses to encode one)."""
    now = int(time.time())
    body = {"iss": issuer, "sub": issuer, "aud": TOKEN_URL, "iat": now, "exp": now + 60}
    body |= {"jti": str(uuid.uuid4())} | claims
    alg = "ES256" if key.key_type == "EC" else "RS256"
    header = {"alg": alg, "kid": key.kid}
    return jws.serialize_compact(header, json.dumps(body).encode(), key, algorithms=[alg])


def endpoint_form(endpoint: str) -> dict[str, str]:
    if endpoint == "/oidc/token":
        return {"grant_type": "client_credentials"}
    return {"token": "not-a-token-of-this-server"}


# -- Authorization: Basic --------------------------------------------------------------

# Each builds the header from the client's real id and secret (bytes, as sent).
BASIC_ATTACKS: dict[str, Callable[[bytes, bytes], dict[str, str]]] = {
    "nul in id": lambda cid, secret: basic_header(cid + b"\x00:" + secret),
    "nul alone as id": lambda cid, secret: basic_header(b"\x00:" + secret),
    "percent-encoded nul in id": lambda cid, secret: basic_header(cid + b"%00:" + secret),
    "invalid utf-8 id": lambda cid, secret: basic_header(b"\xff\xfe" + cid + b":" + secret),
    "surrogate bytes in id": lambda cid, secret: basic_header(cid + b"\xed\xa0\x80:" + secret),
    "nul in secret": lambda cid, secret: basic_header(cid + b":" + secret + b"\x00"),
    "percent-encoded nul in secret": lambda cid, secret: basic_header(cid + b":%00" + secret),
    "invalid utf-8 secret": lambda cid, secret: basic_header(cid + b":\xff\xfe" + secret),
    "raw bytes, not base64": lambda cid, secret: {"Authorization": "Basic \xff\xfe" + "A" * 8},
}


@pytest.fixture
def secret_basic(app: Flask) -> tuple[bytes, bytes]:
    client_id, secret = register(app, auth_method="client_secret_basic")
    return client_id.encode(), secret.encode()


@pytest.mark.parametrize("attack", list(BASIC_ATTACKS))
def test_basic_credentials_no_client_can_have_are_invalid_client(
    http: FlaskClient, secret_basic: tuple[bytes, bytes], attack: str, caplog: Any
) -> None:
    for endpoint in ENDPOINTS:
        form = endpoint_form(endpoint)
        refused = http.post(endpoint, data=form, headers=BASIC_ATTACKS[attack](*secret_basic))
        assert_refused(refused, 401, "invalid_client", caplog)
        control = http.post(endpoint, data=form, headers=basic_header(b":".join(secret_basic)))
        assert control.status_code == 200, (endpoint, control.get_json())


# -- Client assertions (private_key_jwt) -----------------------------------------------


@pytest.fixture
def pkjwt(app: Flask) -> tuple[str, Any]:
    key = client_key("ES256")
    client_id, _ = register(app, key=key)
    return client_id, key


# Each makes the claims (or form fields) of an assertion from the client's id.
CLIENT_ASSERTION_ATTACKS: dict[str, Callable[[str], dict[str, str]]] = {
    "nul in sub": lambda cid: {"sub": cid + "\x00"},
    "nul alone as sub": lambda cid: {"sub": "\x00"},
    "nul in iss": lambda cid: {"iss": cid + "\x00"},
    "nul in iss and sub": lambda cid: {"iss": cid + "\x00", "sub": cid + "\x00"},
    "surrogate in sub": lambda cid: {"sub": cid + "\ud800"},
    "surrogate in iss": lambda cid: {"iss": "\ud800" + cid},
    "nul in jti": lambda cid: {"jti": "j\x00ti"},
    "surrogate in jti": lambda cid: {"jti": "j\ud800ti"},
}


@pytest.mark.parametrize("attack", list(CLIENT_ASSERTION_ATTACKS))
def test_assertion_claims_no_client_can_have_are_invalid_client(
    http: FlaskClient, pkjwt: tuple[str, Any], attack: str, caplog: Any
) -> None:
    client_id, key = pkjwt
    claims = CLIENT_ASSERTION_ATTACKS[attack](client_id)
    for endpoint in ENDPOINTS:
        form = endpoint_form(endpoint) | {"client_assertion_type": ASSERTION_TYPE}
        signed = escaped_assertion(key, client_id, **claims)
        refused = http.post(endpoint, data=form | {"client_assertion": signed})
        assert_refused(refused, 401, "invalid_client", caplog)
        control = http.post(endpoint, data=form | {"client_assertion": assertion(key, client_id)})
        assert control.status_code == 200, (endpoint, control.get_json())


def test_an_unsigned_assertion_with_a_lone_surrogate_is_invalid_client(
    http: FlaskClient, pkjwt: tuple[str, Any], caplog: Any
) -> None:
    """The client is looked up by the unverified 'sub', before any signature is checked."""
    client_id, key = pkjwt
    header = {"alg": "ES256", "kid": key.kid}
    claims = {"iss": client_id, "aud": f"{ISSUER}/oidc/token", "exp": 4102444800, "jti": "u1"}
    for sub in ("\ud800", client_id + "\udfff", "\x00"):
        forged = unsigned(header, claims | {"sub": sub}, b"\x01" * 64)
        refused = http.post("/oidc/token", data=assertion_form(forged))
        assert_refused(refused, 401, "invalid_client", caplog)
        assert "unknown client" in refused.get_json()["error_description"]
    # Control: the same forgery naming the real client gets as far as its signature.
    forged = unsigned(header, claims | {"sub": client_id}, b"\x01" * 64)
    refused = http.post("/oidc/token", data=assertion_form(forged))
    assert refused.status_code == 401
    assert refused.get_json()["error_description"].startswith("assertion rejected")


# -- The jwt-bearer grant's assertion ---------------------------------------------------


@pytest.fixture
def issuer_key() -> Any:
    return client_key("ES256", kid="dauth-1")


@pytest.fixture
def dauth_client(app: Flask, issuer_key: Any) -> tuple[str, str]:
    """A provisioning issuer and a client allowed the grant."""
    trust_issuer(app, issuer_key, DAUTH, provision=True)
    return register(
        app, auth_method="client_secret_basic", grant_types=[GRANT], scope="openid user:self"
    )


GRANT_ASSERTION_ATTACKS: dict[str, dict[str, str]] = {
    "nul in sub": {"sub": "subject\x00"},
    "nul alone as sub": {"sub": "\x00"},
    "surrogate in sub": {"sub": "subject\ud800"},
    "nul in iss": {"iss": DAUTH + "\x00"},
    "surrogate in iss": {"iss": DAUTH + "\udc00"},
    "nul in jti": {"jti": "jti\x00"},
    "surrogate in jti": {"jti": "jti\ud800"},
    "nul in preferred_username": {"preferred_username": "alice\x00"},
    "surrogate in preferred_username": {"preferred_username": "alice\ud800"},
}


@pytest.mark.parametrize("attack", list(GRANT_ASSERTION_ATTACKS))
def test_grant_assertion_claims_no_user_can_have_are_invalid_grant(
    http: FlaskClient, dauth_client: tuple[str, str], issuer_key: Any, attack: str, caplog: Any
) -> None:
    def grant(**claims: str) -> Any:
        claims = {"iss": DAUTH, "sub": "subject", "aud": ISSUER, **claims}
        form = {"grant_type": GRANT, "assertion": escaped_assertion(issuer_key, DAUTH, **claims)}
        return http.post("/oidc/token", data=form, headers=basic(*dauth_client))

    assert_refused(grant(**GRANT_ASSERTION_ATTACKS[attack]), 400, "invalid_grant", caplog)
    control = grant(preferred_username="alice")
    assert control.status_code == 200, control.get_json()


# -- Form and JSON parameters -----------------------------------------------------------


@dataclass(frozen=True)
class GoodRequest:
    """A request that succeeds, and the answer to one of its fields made unstorable."""

    endpoint: str
    form: dict[str, str]
    headers: dict[str, str]


def _password_login(app: Flask) -> tuple[tuple[str, str], dict[str, Any]]:
    make_user(app)
    client = password_client(app, scope="openid user:self offline_access")
    return client, {"grant_type": "password", "username": "alice", "password": PASSWORD}


def good_request(app: Flask, http: FlaskClient, kind: str) -> GoodRequest:
    if kind == "password":
        client, form = _password_login(app)
        return GoodRequest("/oidc/token", form | {"scope": "openid"}, basic(*client))
    if kind == "refresh_token":
        client, form = _password_login(app)
        token = http.post("/oidc/token", data=form, headers=basic(*client)).get_json()
        refresh = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
        return GoodRequest("/oidc/token", refresh, basic(*client))
    if kind == "client_secret_post":
        client_id, secret = register(app, auth_method="client_secret_post")
        form = {"grant_type": "client_credentials", "client_id": client_id}
        return GoodRequest("/oidc/token", form | {"client_secret": secret}, {})
    if kind == "private_key_jwt":
        key = client_key()
        client_id, _ = register(app, key=key)
        return GoodRequest(
            "/oidc/token", assertion_form(assertion(key, client_id), client_id=client_id), {}
        )
    client, form = _password_login(app)
    access = login(http, client).get_json()["access_token"]
    token_form = {"token": access, "token_type_hint": "access_token"}
    return GoodRequest(f"/oidc/{kind}", token_form, basic(*client))


CLIENT_FIELDS = ("client_id", "client_secret", "client_assertion", "client_assertion_type")
FIELDS = [
    ("password", "grant_type"),
    ("password", "username"),
    ("password", "password"),
    ("password", "scope"),
    ("refresh_token", "refresh_token"),
    ("client_secret_post", "client_id"),
    ("client_secret_post", "client_secret"),
    ("private_key_jwt", "client_id"),
    ("private_key_jwt", "client_assertion"),
    ("private_key_jwt", "client_assertion_type"),
    ("introspect", "token"),
    ("introspect", "token_type_hint"),
    ("revoke", "token"),
    ("revoke", "token_type_hint"),
]


def spoil(value: str, char: str) -> str:
    return value[:1] + char + value[1:]


def expected_refusal(field: str) -> tuple[int, str]:
    # Client credentials get what a wrong one gets; any other field is malformed.
    return (401, "invalid_client") if field in CLIENT_FIELDS else (400, "invalid_request")


@pytest.mark.parametrize(("kind", "field"), FIELDS)
def test_nul_in_a_form_field_is_refused(
    app: Flask, http: FlaskClient, kind: str, field: str, caplog: Any
) -> None:
    good = good_request(app, http, kind)
    spoiled = good.form | {field: spoil(good.form[field], "\x00")}
    refused = http.post(good.endpoint, data=spoiled, headers=good.headers)
    assert_refused(refused, *expected_refusal(field), caplog)
    control = http.post(good.endpoint, data=good.form, headers=good.headers)
    assert control.status_code == 200, control.get_json()


def test_nul_in_a_form_field_name_is_invalid_request(
    http: FlaskClient, secret_basic: tuple[bytes, bytes], caplog: Any
) -> None:
    auth = basic_header(b":".join(secret_basic))
    form = "grant_type=client_credentials&sco%00pe=user%3Aread"
    refused = http.post("/oidc/token", data=form, content_type=FORM_TYPE, headers=auth)
    assert_refused(refused, 400, "invalid_request", caplog)
    control = http.post(
        "/oidc/token", data=form.replace("%00", ""), content_type=FORM_TYPE, headers=auth
    )
    assert control.status_code == 200, control.get_json()


@pytest.fixture
def json_app(make_app: Any) -> Flask:
    return make_app(IDP_TOKEN_JSON_BODIES="true")


TOKEN_FIELDS = [(kind, field) for kind, field in FIELDS if kind not in ("introspect", "revoke")]


@pytest.mark.parametrize(("kind", "field"), TOKEN_FIELDS)
def test_unstorable_characters_in_a_json_body_are_refused(
    json_app: Flask, kind: str, field: str, caplog: Any
) -> None:
    """JSON is the one way a lone surrogate reaches a parameter: a form's percent-escapes
    decode invalid UTF-8 to U+FFFD."""
    http = json_app.test_client()
    good = good_request(json_app, http, kind)

    def post(form: dict[str, str]) -> Any:
        # json.dumps writes a lone surrogate as its \\u escape, as a hostile client would.
        body = json.dumps(form)
        return http.post(
            good.endpoint, data=body, content_type="application/json", headers=good.headers
        )

    for char in ("\x00", "\ud800", "\udfff"):
        refused = post(good.form | {field: spoil(good.form[field], char)})
        assert_refused(refused, *expected_refusal(field), caplog)
    control = post(good.form)
    assert control.status_code == 200, control.get_json()
