"""Client authentication at the token endpoint: the method a request presents is the one
tried, a client is refused any method it did not register, and a client assertion's
``jti`` is spent once across every worker."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from tests.oauth.helpers import assertion, assertion_form, basic, client_key, register

CC = {"grant_type": "client_credentials"}
UNAUTHENTICATED = (
    "client authentication failed: unknown client, wrong secret, no credentials, "
    "or a method the client is not registered for"
)
NOT_PKJWT = "client is not registered for private_key_jwt"
METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")


def _credentials(app: Flask, registered: str) -> tuple[str, str, Any]:
    """A client registered for ``registered``: (client_id, its secret or "", its key)."""
    if registered == "private_key_jwt":
        key = client_key()
        client_id, _ = register(app, key=key)
        return client_id, "", key
    client_id, secret = register(app, auth_method=registered)
    return client_id, secret, client_key()


def _present(http: Any, presented: str, client_id: str, secret: str, key: Any) -> Any:
    """A token request authenticated by ``presented``, with the client's own credentials
    where it has them for that method (a made-up secret, an unregistered key otherwise)."""
    secret = secret or "s" * 43
    if presented == "client_secret_basic":
        return http.post("/oidc/token", data=CC, headers=basic(client_id, secret))
    if presented == "client_secret_post":
        form = CC | {"client_id": client_id, "client_secret": secret}
        return http.post("/oidc/token", data=form)
    return http.post("/oidc/token", data=assertion_form(assertion(key, client_id)))


@pytest.mark.parametrize("registered", METHODS)
@pytest.mark.parametrize("presented", METHODS)
def test_a_client_is_refused_every_method_but_its_own(http, app, registered, presented) -> None:
    client_id, secret, key = _credentials(app, registered)
    response = _present(http, presented, client_id, secret, key)
    if presented == registered:
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["token_type"] == "Bearer"
        return
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"] == "invalid_client"
    expected = NOT_PKJWT if presented == "private_key_jwt" else UNAUTHENTICATED
    assert body["error_description"] == expected
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("presented", METHODS)
def test_an_unknown_client_gets_one_answer_whatever_the_method(http, presented) -> None:
    response = _present(http, presented, "no-such-client", "", client_key())
    assert response.status_code == 401
    assert response.get_json() == {
        "error": "invalid_client",
        "error_description": UNAUTHENTICATED,
    }


def test_a_wrong_secret_gets_the_same_answer_as_an_unknown_client(http, app) -> None:
    for method in ("client_secret_basic", "client_secret_post"):
        client_id, secret = register(app, auth_method=method)
        wrong = secret[:-1] + ("B" if secret.endswith("A") else "A")
        response = _present(http, method, client_id, wrong, None)
        assert response.status_code == 401, method
        assert response.get_json()["error_description"] == UNAUTHENTICATED


def test_a_client_id_without_credentials_is_unauthenticated(http, app) -> None:
    client_id, _ = register(app, auth_method="client_secret_post")
    response = http.post("/oidc/token", data=CC | {"client_id": client_id})
    assert response.status_code == 401
    assert response.get_json()["error_description"] == UNAUTHENTICATED
    empty = http.post("/oidc/token", data=CC | {"client_id": client_id, "client_secret": ""})
    assert empty.status_code == 401
    assert empty.get_json()["error_description"] == UNAUTHENTICATED


def test_the_revocation_endpoint_dispatches_alike(http, app) -> None:
    client_id, _, key = _credentials(app, "private_key_jwt")
    form = {"token": "not-a-token"}
    as_basic = http.post("/oidc/revoke", data=form, headers=basic(client_id, "s" * 43))
    assert as_basic.status_code == 401
    assert as_basic.get_json()["error_description"] == UNAUTHENTICATED
    signed = http.post("/oidc/revoke", data=assertion_form(assertion(key, client_id)) | form)
    assert signed.status_code == 200


def test_a_replayed_assertion_is_refused_by_another_worker(make_app) -> None:
    first, second = make_app(), make_app()  # two workers sharing the stores
    key = client_key()
    client_id, _ = register(first, key=key)
    form = assertion_form(assertion(key, client_id))
    assert first.test_client().post("/oidc/token", data=form).status_code == 200
    replayed = second.test_client().post("/oidc/token", data=form)
    assert replayed.status_code == 401
    assert replayed.get_json() == {
        "error": "invalid_client",
        "error_description": "assertion 'jti' was already used",
    }
    again = first.test_client().post("/oidc/token", data=form)
    assert again.status_code == 401


def test_a_replayed_assertion_is_counted_as_refused_not_issued(http, app) -> None:
    key = client_key()
    client_id, _ = register(app, key=key)
    form = assertion_form(assertion(key, client_id))
    assert http.post("/oidc/token", data=form).status_code == 200
    issued = _metric(http, "idp_tokens_issued_total", 'auth_method="private_key_jwt"')
    refused = _metric(http, "idp_token_failures_total", 'rule="replay"')
    assert http.post("/oidc/token", data=form).status_code == 401
    assert _metric(http, "idp_tokens_issued_total", 'auth_method="private_key_jwt"') == issued
    assert _metric(http, "idp_token_failures_total", 'rule="replay"') == refused + 1


def _metric(http: Any, name: str, label: str) -> float:
    text = http.get("/metrics").get_data(as_text=True)
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match and label in match.group(1):
            total += float(match.group(2))
    return total
