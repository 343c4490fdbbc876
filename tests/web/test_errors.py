"""idp.web.errors: the blueprint that owns a route chooses its error format; a URL that
matches no route takes the format of the routes that share its first path segment."""

from __future__ import annotations

import pytest

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/users/some-id/no/such/route", 404),  # no route, under /users
        ("delete", "/users", 405),  # a /users route, without DELETE
        ("put", "/users/me", 405),
        ("post", "/openapi.json", 405),
    ],
)
def test_the_json_api_answers_problem_details(http, method, path, status) -> None:
    response = getattr(http, method)(path)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith(PROBLEM), response.data
    assert response.get_json()["status"] == status


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/oidc/no-such-endpoint", 404, "not_found"),
        ("get", "/usersettings", 404, "not_found"),  # shares a prefix, not a segment
        ("put", "/oidc/token", 405, "method_not_allowed"),
        ("post", "/.well-known/openid-configuration", 405, "method_not_allowed"),
    ],
)
def test_the_rest_answers_oauth_errors(http, method, path, status, code) -> None:
    response = getattr(http, method)(path)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json"), response.data
    assert response.get_json()["error"] == code
