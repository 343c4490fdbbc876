"""GET /metrics behind IDP_METRICS_TOKEN: a bearer token compared in constant time."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import TestResponse

TOKEN = "metrics-Secret-0123456789"


def _get(make_app: Any, authorization: str | None, **env: str) -> TestResponse:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return make_app(**env).test_client().get("/metrics", headers=headers)


def _assert_refused(response: TestResponse) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="idp"'
    assert response.headers["Cache-Control"] == "no-store"
    assert b"idp_" not in response.data  # nothing of the metrics leaks


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer wrong-token",
        "Bearer " + TOKEN[:-1] + "X",  # one character off
        "Bearer " + TOKEN[:-1],  # a prefix
        "Bearer " + TOKEN + "9",  # one character more
        "Basic " + TOKEN,  # right value, wrong scheme
        TOKEN,  # no scheme
    ],
    ids=["no-header", "empty", "wrong", "one-char-off", "prefix", "longer", "basic", "bare"],
)
def test_metrics_refuses_without_the_configured_token(make_app, authorization) -> None:
    _assert_refused(_get(make_app, authorization, IDP_METRICS_TOKEN=TOKEN))


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_metrics_answers_the_configured_token(make_app, scheme) -> None:
    response = _get(make_app, f"{scheme} {TOKEN}", IDP_METRICS_TOKEN=TOKEN)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    body = response.get_data(as_text=True)
    assert "idp_token_request_seconds" in body and "idp_token_failures" in body


def test_metrics_is_open_when_no_token_is_set(make_app) -> None:
    response = _get(make_app, None)
    assert response.status_code == 200
    assert "idp_token_request_seconds" in response.get_data(as_text=True)
    assert "WWW-Authenticate" not in response.headers


def test_an_unset_token_also_ignores_a_stray_authorization_header(make_app) -> None:
    assert _get(make_app, "Bearer anything").status_code == 200
