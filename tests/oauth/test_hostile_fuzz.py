"""Property: whatever bytes or characters a request carries, in any field of any token,
revocation or introspection request, in a Basic header or inside an assertion's claims,
the answer is never a 5xx, a 4xx is an RFC 6749 error body, and nothing is logged at
ERROR.

Each example starts from a request that succeeds (so hostile values travel as far as a
good request would: past client authentication, into grants and token lookups) and
spoils some of it with NUL, lone surrogates, bytes that are not UTF-8, control and
format characters. Bodies go as forms and, at the token endpoint, as JSON: a JSON
``\\u`` escape is the one way a lone surrogate survives into a parameter.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws

from tests.conftest import ISSUER
from tests.oauth.helpers import (
    ASSERTION_TYPE,
    PASSWORD,
    TOKEN_URL,
    basic,
    client_key,
    login,
    make_user,
    password_client,
    register,
    trust_issuer,
)

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DAUTH = "https://dauth.example.net"
FORM_TYPE = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
# Examples per test: bounded so that each profile runs this file in seconds.
EXAMPLES = 120

SPECIAL = [
    "\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\x01", "\x1b", "\x7f", "\r\n", "\t",
    "\x85", "\u2028", "\u202e", "\u200b", "\ufeff", "\ufffe", "\uffff", "\U0010ffff",
    "%00", "%", "+", "&", "=", ":", '"', "\\",
]  # fmt: skip
HOSTILE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(SPECIAL),
        st.characters(categories=["Cc", "Cf", "Cs", "Zl", "Zp"]),
        st.characters(),
    ),
    max_size=24,
).map("".join)
HOSTILE_BYTES = st.one_of(
    st.sampled_from([b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\x80", b"\xf8\x88\x80\x80"]),
    st.binary(max_size=24),
)
# A value is text (sent as UTF-8, a lone surrogate as its 3 bytes) or raw bytes.
HOSTILE = st.one_of(HOSTILE_TEXT, HOSTILE_BYTES)
EXTRA_NAMES = [
    "grant_type", "scope", "sub", "username", "password", "refresh_token", "assertion",
    "token", "token_type_hint", "client_id", "client_secret", "client_assertion",
    "client_assertion_type", "\x00", "sco\x00pe", "\ud800",
]  # fmt: skip
CLAIMS = ["iss", "sub", "jti", "aud", "preferred_username", "kid"]
# What a header value can carry once a server has split the header lines.
HEADER_CHARACTERS = st.characters(max_codepoint=255, exclude_characters="\r\n")


@dataclass
class Fixtures:
    """What the good requests are made of: one client of each kind, a user, an issuer."""

    basic: tuple[str, str]
    post: tuple[str, str]
    pkjwt: tuple[str, Any]
    password: tuple[str, str]
    grant: tuple[str, str]
    issuer_key: Any
    refresh_token: str
    access_token: str


@dataclass
class Request:
    endpoint: str
    form: dict[str, str | bytes]
    basic: tuple[str, str] | None = None
    claims: dict[str, Any] | None = None  # of the assertion in ``assertion_field``
    assertion_field: str | None = None
    key: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def json_app(make_app: Callable[..., Flask]) -> Flask:
    # Form bodies work as always; JSON bodies are accepted at the token endpoint too.
    return make_app(IDP_TOKEN_JSON_BODIES="true")


@pytest.fixture
def parts(json_app: Flask) -> Fixtures:
    http = json_app.test_client()
    issuer_key = client_key("ES256", kid="dauth-1")
    trust_issuer(json_app, issuer_key, DAUTH, provision=True)
    key = client_key("ES256")
    pkjwt_id, _ = register(json_app, key=key)
    make_user(json_app)
    password = password_client(json_app, scope="openid user:self offline_access")
    tokens = login(http, password).get_json()
    return Fixtures(
        basic=register(json_app, auth_method="client_secret_basic"),
        post=register(json_app, auth_method="client_secret_post"),
        pkjwt=(pkjwt_id, key),
        password=password,
        grant=register(
            json_app, auth_method="client_secret_basic", grant_types=[GRANT], scope="openid"
        ),
        issuer_key=issuer_key,
        refresh_token=tokens["refresh_token"],
        access_token=tokens["access_token"],
    )


def good_request(parts: Fixtures, kind: str, endpoint: str) -> Request:
    """A request that succeeds (until earlier examples used up its refresh token or
    locked its user; a refusal is as good a property check as a success)."""
    if endpoint == "/oidc/token":
        form: dict[str, str | bytes] = {"grant_type": "client_credentials"}
    else:
        form = {"token": parts.access_token, "token_type_hint": "access_token"}
    if kind == "client_secret_basic":
        return Request(endpoint, form, basic=parts.basic)
    if kind == "client_secret_post":
        client_id, secret = parts.post
        return Request(endpoint, form | {"client_id": client_id, "client_secret": secret})
    if kind == "private_key_jwt":
        client_id, key = parts.pkjwt
        claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL}
        form |= {"client_assertion_type": ASSERTION_TYPE}
        return Request(endpoint, form, claims=claims, assertion_field="client_assertion", key=key)
    if kind == "password":
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        return Request(endpoint, form | {"scope": "openid"}, basic=parts.password)
    if kind == "refresh_token":
        form = {"grant_type": "refresh_token", "refresh_token": parts.refresh_token}
        return Request(endpoint, form, basic=parts.password)
    claims = {"iss": DAUTH, "sub": "subject", "aud": ISSUER, "preferred_username": "dee"}
    return Request(
        endpoint,
        {"grant_type": GRANT},
        basic=parts.grant,
        claims=claims,
        assertion_field="assertion",
        key=parts.issuer_key,
    )


TOKEN_KINDS = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "password",
    "refresh_token",
    "jwt-bearer",
]
CLIENT_KINDS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
TARGETS = [("/oidc/token", kind) for kind in TOKEN_KINDS] + [
    (endpoint, kind) for endpoint in ("/oidc/introspect", "/oidc/revoke") for kind in CLIENT_KINDS
]


def sign(request: Request) -> None:
    """The assertion, signed with the right key over claims json.dumps wrote (a lone
    surrogate travels as its escape; joserfc would refuse to encode one)."""
    if request.claims is None or request.assertion_field is None:
        return
    now = int(time.time())
    claims = {"iat": now, "exp": now + 60, "jti": str(uuid.uuid4())} | request.claims
    header = {"alg": "ES256", "kid": claims.pop("kid", request.key.kid)}
    payload = json.dumps(claims).encode()
    signed = jws.serialize_compact(header, payload, request.key, algorithms=["ES256"])
    request.form.setdefault(request.assertion_field, signed)


def as_text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")


def as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


def spoil(good: str | bytes, hostile: str | bytes, how: str) -> str | bytes:
    if how == "replace":
        return hostile
    if isinstance(good, str) and isinstance(hostile, str):
        return good + hostile if how == "append" else good[:1] + hostile + good[1:]
    good_bytes, hostile_bytes = as_bytes(good), as_bytes(hostile)
    if how == "append":
        return good_bytes + hostile_bytes
    return good_bytes[:1] + hostile_bytes + good_bytes[1:]


SPOILS = st.tuples(st.sampled_from(["replace", "append", "insert"]), HOSTILE)


def form_body(form: dict[str, str | bytes]) -> bytes:
    return b"&".join(
        quote_from_bytes(as_bytes(name)).encode()
        + b"="
        + quote_from_bytes(as_bytes(value)).encode()
        for name, value in form.items()
    )


def basic_header(client_id: str | bytes, secret: str | bytes) -> dict[str, str]:
    raw = as_bytes(client_id) + b":" + as_bytes(secret)
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def send(http: FlaskClient, request: Request, as_json: bool) -> Any:
    if request.basic is not None and "Authorization" not in request.headers:
        request.headers |= basic(*request.basic)
    if as_json:
        body = json.dumps({as_text(k): as_text(v) for k, v in request.form.items()}).encode()
        content_type = JSON_TYPE
    else:
        body, content_type = form_body(request.form), FORM_TYPE
    return http.post(
        request.endpoint, data=body, content_type=content_type, headers=request.headers
    )


def check_answer(response: Any, caplog: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        body = response.get_json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str), body
        assert set(body) <= {"error", "error_description"}, body
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def test_hostile_fields_never_5xx(json_app: Flask, parts: Fixtures, caplog: Any) -> None:
    http = json_app.test_client()
    statuses: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(
        target=st.sampled_from(TARGETS),
        as_json=st.booleans(),
        field_spoils=st.dictionaries(st.sampled_from(EXTRA_NAMES), SPOILS, max_size=3),
        claim_spoils=st.dictionaries(st.sampled_from(CLAIMS), SPOILS, max_size=2),
        hostile_name=st.one_of(st.none(), HOSTILE_TEXT),
    )
    def check(
        target: tuple[str, str],
        as_json: bool,
        field_spoils: dict[str, tuple[str, str | bytes]],
        claim_spoils: dict[str, tuple[str, str | bytes]],
        hostile_name: str | None,
    ) -> None:
        endpoint, kind = target
        request = good_request(parts, kind, endpoint)
        for claim, (how, hostile) in claim_spoils.items():
            if request.claims is not None:
                request.claims[claim] = as_text(spoil(request.claims.get(claim, ""), hostile, how))
        sign(request)
        for name, (how, hostile) in field_spoils.items():
            request.form[name] = spoil(request.form.get(name, ""), hostile, how)
        if hostile_name is not None:
            request.form[hostile_name] = "x"
        # JSON bodies are a token-endpoint option only; elsewhere they are refused.
        response = send(http, request, as_json and endpoint == "/oidc/token")
        check_answer(response, caplog)
        statuses[response.status_code] += 1

    check()
    # The good requests were good: some examples got through, the rest were refused.
    assert statuses[200] > 0 and statuses[400] > 0 and statuses[401] > 0, statuses


def test_hostile_basic_credentials_never_5xx(json_app: Flask, parts: Fixtures, caplog: Any) -> None:
    http = json_app.test_client()
    statuses: Counter[int] = Counter()
    credentials = st.one_of(HOSTILE_BYTES, HOSTILE_TEXT.map(as_bytes))

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(
        endpoint=st.sampled_from(["/oidc/token", "/oidc/introspect", "/oidc/revoke"]),
        id_spoil=st.one_of(st.none(), SPOILS),
        secret_spoil=st.one_of(st.none(), SPOILS),
        raw=st.one_of(st.none(), credentials, st.text(alphabet=HEADER_CHARACTERS)),
    )
    def check(
        endpoint: str,
        id_spoil: tuple[str, str | bytes] | None,
        secret_spoil: tuple[str, str | bytes] | None,
        raw: str | bytes | None,
    ) -> None:
        request = good_request(parts, "client_secret_basic", endpoint)
        client_id, secret = parts.basic
        spoiled_id = spoil(client_id, id_spoil[1], id_spoil[0]) if id_spoil else client_id
        spoiled = spoil(secret, secret_spoil[1], secret_spoil[0]) if secret_spoil else secret
        request.headers = basic_header(spoiled_id, spoiled)
        if isinstance(raw, bytes):
            request.headers = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        elif isinstance(raw, str):
            # Header bytes as a server hands them over (latin-1), not base64 at all.
            request.headers = {"Authorization": "Basic " + raw}
        response = send(http, request, as_json=False)
        check_answer(response, caplog)
        statuses[response.status_code] += 1

    check()
    assert statuses[200] > 0 and statuses[401] > 0, statuses
