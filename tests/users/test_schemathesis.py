"""Property-based run of the /users API against its own OpenAPI document (schemathesis).

Every operation gets a bounded number of generated requests (valid and invalid) with a
valid token; a 5xx, an undocumented status, a wrong content type or a body that breaks
the document fails the test.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.users.conftest import client_token

MAX_EXAMPLES = 30
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def run_schema(
    app: Any,
    headers: dict[str, str],
    include: str,
    exclude: str | None,
    path_parameters: dict[str, str] | None = None,
) -> list[str]:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app).include(path_regex=include)
    if exclude:
        schema = schema.exclude(path_regex=exclude)
    exercised = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            if path_parameters:
                case.path_parameters = {**case.path_parameters, **path_parameters}
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
        exercised.append(f"{operation.method.upper()} {operation.path}")
    return exercised


def test_users_api_conforms_to_its_document(http, app) -> None:
    headers = {"Authorization": f"Bearer {client_token(http, app)}"}
    exercised = run_schema(app, headers, r"^/users", r"^/users/me")
    assert len(exercised) == 13, exercised  # every management route was exercised


def test_attributes_of_a_real_user_conform_to_the_document(http, app) -> None:
    """Generated ids almost never name a user; here every request reaches a real one, so
    generated attribute bodies are parsed, stored and listed."""
    headers = {"Authorization": f"Bearer {client_token(http, app)}"}
    user = http.post("/users", json={"username": "attributed"}, headers=headers).get_json()
    exercised = run_schema(
        app, headers, r"^/users/\{userId\}/attributes", None, {"userId": user["userId"]}
    )
    assert sorted(exercised) == [
        "DELETE /users/{userId}/attributes/{attributeId}",
        "GET /users/{userId}/attributes",
        "POST /users/{userId}/attributes",
    ]


def test_own_account_api_conforms_to_its_document(self_token, app) -> None:
    _, headers = self_token
    exercised = run_schema(app, headers, r"^/users/me", None)
    assert sorted(exercised) == [
        "DELETE /users/me/attributes/{attributeId}",
        "GET /users/me",
        "GET /users/me/attributes",
        "POST /users/me/attributes",
        "PUT /users/me/password",
    ]
