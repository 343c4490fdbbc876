"""Property-based run of the /users API against its own OpenAPI document (schemathesis).

Every operation gets a bounded number of generated requests (valid and invalid) with a
valid token; a 5xx, an undocumented status, a wrong content type or a body that breaks
the document fails the test. The schema never yields NUL, lone surrogates or most other
control characters, which a client can send all the same: about half the requests get
one in a string of their body, path or query.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.users.conftest import client_token

MAX_EXAMPLES = 30
# NUL: PostgreSQL refuses it in text. Lone surrogates have no UTF-8 form; a URL can only
# carry their bytes, which decode to U+FFFD, so they go into JSON bodies only.
URL_HOSTILE = ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\u202e", "\ufeff", "\ufffe"]
BODY_HOSTILE = [*URL_HOSTILE, "\ud800", "\udbff", "\udc00", "\udfff"]
SPOILS = st.one_of(st.none(), st.tuples(st.sampled_from(BODY_HOSTILE), st.integers(0, 1000)))
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

        @given(case=operation.as_strategy(), spoil=SPOILS)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any, spoil: tuple[str, int] | None) -> None:
            if path_parameters:
                case.path_parameters = {**case.path_parameters, **path_parameters}
            if spoil is not None:
                spoil_one_string(case, *spoil)
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
        exercised.append(f"{operation.method.upper()} {operation.path}")
    return exercised


def spoil_one_string(case: Any, char: str, pick: int) -> None:
    """Add ``char`` to one string of the case: a body value, a path parameter, a query value."""
    places: list[tuple[Any, Any, bool]] = []  # (container, key, in the URL)
    for container in (case.path_parameters, case.query):
        places += [
            (container, key, True) for key, v in (container or {}).items() if isinstance(v, str)
        ]
    _body_strings(case.body, places)
    if isinstance(case.body, str):
        case.body += char
    elif places:
        container, key, in_url = places[pick % len(places)]
        container[key] += URL_HOSTILE[pick % len(URL_HOSTILE)] if in_url else char


def _body_strings(value: Any, places: list[tuple[Any, Any, bool]]) -> None:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        if isinstance(item, str):
            places.append((value, key, False))
        else:
            _body_strings(item, places)


def test_users_api_conforms_to_its_document(http, app) -> None:
    headers = {"Authorization": f"Bearer {client_token(http, app)}"}
    exercised = run_schema(app, headers, r"^/users", r"^/users/me")
    assert len(exercised) == 14, exercised  # every management route was exercised


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
        "PUT /users/{userId}/attributes/{attributeId}",
    ]


def test_own_account_api_conforms_to_its_document(self_token, app) -> None:
    _, headers = self_token
    exercised = run_schema(app, headers, r"^/users/me", None)
    assert sorted(exercised) == [
        "DELETE /users/me/attributes/{attributeId}",
        "GET /users/me",
        "GET /users/me/attributes",
        "POST /users/me/attributes",
        "PUT /users/me/attributes/{attributeId}",
        "PUT /users/me/password",
    ]
