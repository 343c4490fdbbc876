"""Client secret methods, client_credentials, RFC 6749 §5.2 errors and hostile input."""

from __future__ import annotations

import base64

import pytest

from tests.oauth.helpers import assertion, assertion_form, basic, client_key, register

CC = {"grant_type": "client_credentials"}
FORM_TYPE = "application/x-www-form-urlencoded"


@pytest.fixture
def secret_basic(app):
    return register(app, auth_method="client_secret_basic")


@pytest.fixture
def secret_post(app):
    return register(app, auth_method="client_secret_post", scope="user:read")


def test_client_secret_basic(http, secret_basic) -> None:
    client_id, secret = secret_basic
    response = http.post("/oidc/token", data=CC, headers=basic(client_id, secret))
    assert response.status_code == 200
    assert response.get_json()["scope"] == "user:create user:read"


def test_client_secret_basic_wrong_secret_is_401_with_a_basic_challenge(http, secret_basic):
    client_id, secret = secret_basic
    wrong = secret[:-1] + ("B" if secret.endswith("A") else "A")
    response = http.post("/oidc/token", data=CC, headers=basic(client_id, wrong))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.get_json()["error_description"].startswith("client authentication failed")
    assert secret[:-1] not in response.get_data(as_text=True)


def test_client_secret_post(http, secret_post) -> None:
    client_id, secret = secret_post
    form = CC | {"client_id": client_id, "client_secret": secret}
    response = http.post("/oidc/token", data=form)
    assert response.status_code == 200
    assert response.get_json()["scope"] == "user:read"
    wrong = http.post("/oidc/token", data=form | {"client_secret": "nope"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_client"
    assert "nope" not in wrong.get_data(as_text=True)


def test_a_client_uses_only_its_registered_method(http, secret_basic, secret_post) -> None:
    basic_id, basic_secret = secret_basic
    post_id, post_secret = secret_post
    as_post = CC | {"client_id": basic_id, "client_secret": basic_secret}
    assert http.post("/oidc/token", data=as_post).status_code == 401
    as_basic = http.post("/oidc/token", data=CC, headers=basic(post_id, post_secret))
    assert as_basic.status_code == 401


def test_unknown_client_is_invalid_client(http) -> None:
    response = http.post("/oidc/token", data=CC, headers=basic("nobody", "x" * 43))
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


def test_no_client_authentication_is_invalid_client(http) -> None:
    response = http.post("/oidc/token", data=CC)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic ",
        "Bearer abc",
        "Basic " + "A" * 5000,
    ],
)
def test_malformed_basic_credentials_are_invalid_client(http, header) -> None:
    response = http.post("/oidc/token", data=CC, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_scope_is_the_requested_subset_and_unknown_scope_is_invalid_scope(http, secret_basic):
    client_id, secret = secret_basic
    auth = basic(client_id, secret)
    narrowed = http.post("/oidc/token", data=CC | {"scope": "user:read"}, headers=auth)
    assert narrowed.status_code == 200 and narrowed.get_json()["scope"] == "user:read"
    for scope in ("admin", "user:read user:delete", "openid"):
        response = http.post("/oidc/token", data=CC | {"scope": scope}, headers=auth)
        assert response.status_code == 400
        assert response.get_json()["error"] == "invalid_scope"


def test_a_client_not_allowed_client_credentials_is_unauthorized_client(http, app) -> None:
    client_id, secret = register(
        app, auth_method="client_secret_basic", grant_types=["password", "refresh_token"]
    )
    response = http.post("/oidc/token", data=CC, headers=basic(client_id, secret))
    assert response.status_code == 400
    assert response.get_json()["error"] == "unauthorized_client"


def test_grant_type_errors(http, secret_basic) -> None:
    client_id, secret = secret_basic
    auth = basic(client_id, secret)
    missing = http.post("/oidc/token", data={"scope": "user:read"}, headers=auth)
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"
    unknown = http.post("/oidc/token", data={"grant_type": "magic"}, headers=auth)
    assert unknown.status_code == 400
    assert unknown.get_json()["error"] == "unsupported_grant_type"


def test_per_client_access_token_ttl(http, app) -> None:
    client_id, secret = register(app, auth_method="client_secret_basic", access_token_ttl=120)
    response = http.post("/oidc/token", data=CC, headers=basic(client_id, secret))
    assert response.get_json()["expires_in"] == 120


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"data": "grant_type=client_credentials&grant_type=client_credentials"}, 400, None),
        ({"data": "grant_type=client_credentials&scope=a&scope=b"}, 400, None),
        ({"json": {"grant_type": "client_credentials"}}, 400, None),
        ({"data": "grant_type=client_credentials", "content_type": "text/plain"}, 400, None),
        ({"data": "%%%%=%%%&&&=", "content_type": None}, 400, None),
        ({"data": b"\xff\xfe\x00grant_type=\xff", "content_type": None}, 400, None),
        ({"data": "grant_type=password&username=a%00b&password=x"}, 400, None),
    ],
)
def test_malformed_requests_are_invalid_request(http, kwargs, status, error) -> None:
    kwargs.setdefault("content_type", "application/x-www-form-urlencoded")
    if kwargs["content_type"] is None:
        kwargs["content_type"] = "application/x-www-form-urlencoded"
    response = http.post("/oidc/token", **kwargs)
    assert response.status_code == status
    assert response.get_json()["error"] in ("invalid_request", "invalid_client")
    assert response.headers["Cache-Control"] == "no-store"


def test_parameters_in_the_query_string_are_refused(http, secret_basic) -> None:
    client_id, secret = secret_basic
    response = http.post("/oidc/token?scope=user:read", data=CC, headers=basic(client_id, secret))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_a_body_over_max_body_is_413(http) -> None:
    body = "grant_type=client_credentials&pad=" + "x" * 70_000
    response = http.post("/oidc/token", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert response.get_json()["error"] == "invalid_request"


def test_get_on_the_token_endpoint_is_405_json(http) -> None:
    response = http.get("/oidc/token")
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"


def test_mixing_secret_post_and_basic_is_invalid_request(http, secret_post) -> None:
    client_id, secret = secret_post
    form = CC | {"client_id": client_id, "client_secret": secret}
    response = http.post("/oidc/token", data=form, headers=basic(client_id, secret))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_discovery_advertises_the_token_endpoint(http) -> None:
    body = http.get("/.well-known/openid-configuration").get_json()
    assert body["token_endpoint"] == "http://127.0.0.1:8000/oidc/token"
    assert "client_credentials" in body["grant_types_supported"]
    assert set(body["token_endpoint_auth_methods_supported"]) == {
        "private_key_jwt",
        "client_secret_basic",
        "client_secret_post",
    }
    assert body["token_endpoint_auth_signing_alg_values_supported"] == [
        "RS256",
        "PS256",
        "ES256",
        "EdDSA",
        "Ed25519",
    ]


def test_metrics_count_issued_tokens_and_failures(http, app) -> None:
    key = client_key()
    client_id, _ = register(app, key=key)
    issued = http.post("/oidc/token", data=assertion_form(assertion(key, client_id)))
    assert issued.status_code == 200
    refused = http.post("/oidc/token", data=assertion_form(assertion(key, client_id, aud="x")))
    assert refused.status_code == 401
    text = http.get("/metrics").get_data(as_text=True)
    assert (
        'idp_tokens_issued_total{auth_method="private_key_jwt",grant_type="client_credentials"}'
        in text
    )
    assert 'idp_token_failures_total{error="invalid_client",rule="aud"}' in text
    assert "idp_token_request_seconds_bucket" in text


def test_no_active_signing_key_is_503_not_500(http, app) -> None:
    client_id, secret = register(app, auth_method="client_secret_basic")
    store = app.extensions["idp"].key_store
    for path in store.directory.iterdir():
        path.unlink()
    app.extensions["idp"].key_ring._checked_at = float("-inf")
    response = http.post("/oidc/token", data=CC, headers=basic(client_id, secret))
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"


# -- JSON bodies (IDP_TOKEN_JSON_BODIES) --------------------------------------------


def test_json_bodies_are_refused_by_default(app, http) -> None:
    client_id, secret = register(app, auth_method="client_secret_basic")
    answer = http.post(
        "/oidc/token", json={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_request"
    form = http.post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )
    assert form.status_code == 200  # control


def test_json_bodies_when_enabled(make_app) -> None:
    app = make_app(IDP_TOKEN_JSON_BODIES="true")
    http = app.test_client()
    client_id, secret = register(app, auth_method="client_secret_post")
    body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    answer = http.post("/oidc/token", json=body)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["token_type"].lower() == "bearer"
    wrong = http.post("/oidc/token", json=body | {"client_secret": "nope"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_client"
    for hostile in ([body], {**body, "scope": ["user:read"]}, "text", {"grant_type": 1}):
        refused = http.post("/oidc/token", json=hostile)
        assert refused.status_code == 400, hostile
        assert refused.get_json()["error"] == "invalid_request"
    broken = http.post("/oidc/token", data="{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.get_json()["error"] == "invalid_request"
    # Form bodies keep working, and JSON stays refused at the other endpoints.
    form = http.post("/oidc/token", data=body)
    assert form.status_code == 200
    revoke = http.post("/oidc/revoke", json={"token": "x", **body})
    assert revoke.status_code == 400


@pytest.mark.parametrize(
    ("issuer", "status", "error"),
    [
        # idp runs behind whatever terminates TLS: requests reach it over plain HTTP
        # with the public host name, and an https issuer is served.
        ("https://idp.example.com", 200, None),
        # OAuth over plain HTTP is refused (RFC 6749 §3.2 requires TLS at the token
        # endpoint) unless the issuer is a loopback address, for development.
        ("http://idp.example.com", 400, "insecure_transport"),
    ],
)
def test_transport_security_is_judged_by_the_public_issuer(make_app, issuer, status, error):
    app = make_app(IDP_ISSUER=issuer)
    client_id, secret = register(app, auth_method="client_secret_basic")
    response = app.test_client().post(
        "/oidc/token", data=CC, headers=basic(client_id, secret), base_url="http://idp.example.com"
    )
    assert response.status_code == status
    assert response.get_json().get("error") == error


# -- how the form body is read ---------------------------------------------------------


def test_an_escape_that_is_not_utf8_stays_as_its_text(http) -> None:
    body = b"grant_type=client_credentials&%FF=1&%FF=2"
    response = http.post("/oidc/token", data=body, content_type=FORM_TYPE)
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_request",
        "error_description": "parameter '%FF' is given more than once",
    }


def test_a_body_that_is_not_utf8_holds_no_parameters(http, secret_post) -> None:
    client_id, secret = secret_post
    body = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
    response = http.post("/oidc/token", data=body.encode() + b"&x=\xff", content_type=FORM_TYPE)
    assert response.status_code == 400
    assert response.get_json()["error_description"] == "grant_type is required"
    control = http.post("/oidc/token", data=body.encode() + b"&x=%FF", content_type=FORM_TYPE)
    assert control.status_code == 200


def test_blank_values_are_kept_and_plus_is_a_space(http, secret_post) -> None:
    client_id, secret = secret_post
    body = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
    spaced = http.post("/oidc/token", data=body + "&scope=+user:read+", content_type=FORM_TYPE)
    assert spaced.status_code == 200 and spaced.get_json()["scope"] == "user:read"
    blank = http.post("/oidc/token", data=body + "&client_secret=", content_type=FORM_TYPE)
    assert blank.status_code == 400
    assert (
        blank.get_json()["error_description"] == "parameter 'client_secret' is given more than once"
    )
