"""Every private_key_jwt rule, each with a hostile assertion."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from tests.conftest import ISSUER
from tests.oauth.helpers import (
    TOKEN_URL,
    assertion,
    assertion_form,
    basic,
    client_key,
    register,
    unsigned,
)


@pytest.fixture
def pkjwt(app):
    key = client_key("ES256")
    client_id, _ = register(app, key=key)
    return client_id, key


def post(http, form, headers=None):
    return http.post("/oidc/token", data=form, headers=headers or {})


def assert_invalid_client(response, fragment: str) -> None:
    assert response.status_code == 401, response.get_json()
    body = response.get_json()
    assert body["error"] == "invalid_client"
    assert fragment in body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"


def test_a_valid_assertion_gets_a_token(http, pkjwt) -> None:
    client_id, key = pkjwt
    response = post(http, assertion_form(assertion(key, client_id)))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "user:create user:read"
    assert "refresh_token" not in body
    assert response.headers["Cache-Control"] == "no-store"


def test_alg_none_is_rejected(http, pkjwt) -> None:
    client_id, _ = pkjwt
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 60, "jti": "n1"}
    response = post(http, assertion_form(unsigned({"alg": "none"}, claims)))
    assert_invalid_client(response, "")


def test_hs256_signed_with_the_public_key_is_rejected(http, pkjwt) -> None:
    client_id, key = pkjwt
    public_pem = key.as_pem(private=False)
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 60, "jti": "h1"}
    header = {"alg": "HS256", "kid": key.kid}
    # joserfc refuses to make this forgery, so the HMAC is computed by hand (test input only).
    for secret in (public_pem, json.dumps(key.as_dict(private=False)).encode()):
        signing_input = unsigned(header, claims).rsplit(".", 1)[0]
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        forged = unsigned(header, claims, mac)
        assert_invalid_client(post(http, assertion_form(forged)), "")


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"aud": "https://someone-else.example/token"}, "'aud' is not this authorization server"),
        ({"aud": [TOKEN_URL, "https://other.example"]}, "exactly one value"),
        ({"aud": []}, "exactly one value"),
        ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 180}, "expired"),
        ({"exp": None}, "'exp' is required"),
        ({"iat": int(time.time()) + 600, "exp": int(time.time()) + 660}, "'iat' is in the future"),
        ({"nbf": int(time.time()) + 600}, "'nbf' is in the future"),
        ({"exp": int(time.time()) + 3600}, "IDP_ASSERTION_MAX_LIFETIME"),
        ({"iat": None, "exp": int(time.time()) + 900}, "IDP_ASSERTION_MAX_LIFETIME"),
        ({"jti": None}, "'jti' is required"),
        ({"jti": 12345}, "'jti' is required"),
        ({"iss": "someone-else"}, "'iss' is not the expected issuer"),
        ({"exp": "tomorrow"}, "number"),
    ],
)
def test_claim_rules(http, pkjwt, claims, fragment) -> None:
    client_id, key = pkjwt
    assert_invalid_client(post(http, assertion_form(assertion(key, client_id, **claims))), fragment)


def test_one_element_aud_array_and_issuer_audience_are_accepted(http, pkjwt) -> None:
    client_id, key = pkjwt
    for aud in ([TOKEN_URL], ISSUER, [ISSUER]):
        response = post(http, assertion_form(assertion(key, client_id, aud=aud)))
        assert response.status_code == 200, (aud, response.get_json())


def test_issuer_only_audience_mode_refuses_the_token_url(make_app) -> None:
    app = make_app(IDP_ASSERTION_AUDIENCE="issuer")
    key = client_key()
    client_id, _ = register(app, key=key)
    http = app.test_client()
    refused = post(http, assertion_form(assertion(key, client_id, aud=TOKEN_URL)))
    assert_invalid_client(refused, "'aud'")
    accepted = post(http, assertion_form(assertion(key, client_id, aud=ISSUER)))
    assert accepted.status_code == 200


def test_signed_by_another_key_is_rejected(http, pkjwt) -> None:
    client_id, key = pkjwt
    impostor = client_key("ES256", kid=key.kid)
    assert_invalid_client(post(http, assertion_form(assertion(impostor, client_id))), "")


def test_unknown_kid_is_rejected(http, pkjwt) -> None:
    client_id, _ = pkjwt
    stranger = client_key("ES256", kid="not-registered")
    response = post(http, assertion_form(assertion(stranger, client_id)))
    assert_invalid_client(response, "no key with kid 'not-registered'")


def test_alg_must_match_the_key_type(http, app) -> None:
    rsa = client_key("RS256")
    client_id, _ = register(app, key=rsa)
    # An RSA key cannot verify ES256; PS512 is outside the allow-list altogether.
    for alg in ("PS512", "RS512"):
        assert_invalid_client(post(http, assertion_form(assertion(rsa, client_id, alg=alg))), "")


@pytest.mark.parametrize(
    "garbage",
    [
        "not-a-jwt",
        "a.b.c",
        "eyJhbGciOiJFUzI1NiJ9.!!!.xyz",
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOjF9.c2ln",
        unsigned({"alg": "ES256"}, {"sub": ["a"]}),
        unsigned({"alg": "ES256"}, {"sub": "no-such-client"}),
        "a.b.c.d.e",
        "." * 5000,
    ],
)
def test_malformed_assertions_are_invalid_client(http, garbage) -> None:
    assert_invalid_client(post(http, assertion_form(garbage)), "")


def test_wrong_assertion_type_is_invalid_client(http, pkjwt) -> None:
    client_id, key = pkjwt
    form = assertion_form(assertion(key, client_id))
    form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    assert_invalid_client(post(http, form), "client_assertion_type")


def test_client_id_form_field_must_match(http, pkjwt) -> None:
    client_id, key = pkjwt
    form = assertion_form(assertion(key, client_id), client_id="someone-else")
    assert_invalid_client(post(http, form), "client_id does not match")
    same = assertion_form(assertion(key, client_id), client_id=client_id)
    assert post(http, same).status_code == 200


def test_a_replayed_assertion_is_rejected(http, pkjwt) -> None:
    client_id, key = pkjwt
    signed = assertion(key, client_id)
    assert post(http, assertion_form(signed)).status_code == 200
    assert_invalid_client(post(http, assertion_form(signed)), "'jti' was already used")


def test_the_same_jti_from_two_clients_is_not_a_replay(http, app, pkjwt) -> None:
    client_id, key = pkjwt
    other_key = client_key()
    other_id, _ = register(app, key=other_key)
    assert post(http, assertion_form(assertion(key, client_id, jti="shared"))).status_code == 200
    second = post(http, assertion_form(assertion(other_key, other_id, jti="shared")))
    assert second.status_code == 200


def test_mixing_basic_and_an_assertion_is_invalid_request(http, pkjwt) -> None:
    client_id, key = pkjwt
    response = post(http, assertion_form(assertion(key, client_id)), basic(client_id, "x" * 40))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_a_secret_client_cannot_use_an_assertion(http, app) -> None:
    client_id, _ = register(app, auth_method="client_secret_basic")
    key = client_key()
    assert_invalid_client(post(http, assertion_form(assertion(key, client_id))), "")


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA", "Ed25519"])
def test_each_allowed_algorithm_works(http, app, alg) -> None:
    key = client_key({"Ed25519": "EdDSA"}.get(alg, alg))
    client_id, _ = register(app, key=key)
    response = post(http, assertion_form(assertion(key, client_id, alg=alg)))
    assert response.status_code == 200, response.get_json()


def test_no_assertion_text_is_echoed(http, pkjwt) -> None:
    client_id, key = pkjwt
    signed = assertion(key, client_id, aud="https://wrong.example")
    response = post(http, assertion_form(signed))
    assert signed not in response.get_data(as_text=True)
    assert signed.split(".")[2] not in str(response.headers)
