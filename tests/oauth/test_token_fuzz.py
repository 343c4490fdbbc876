"""Hostile input at the token endpoint: whatever arrives, the answer is a 4xx in RFC 6749 form."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oauth.helpers import ASSERTION_TYPE, unsigned

PARAMETERS = st.sampled_from(
    [
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "username",
        "x",
    ]
)
VALUES = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["client_credentials", "password", ASSERTION_TYPE, "user:read"]),
)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
# The examples share the test's app on purpose: one app per example would cost seconds.
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def assert_oauth_error(response) -> None:
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) <= {"error", "error_description"} and body["error"]


@FUZZ
@given(form=st.lists(st.tuples(PARAMETERS, VALUES), max_size=6))
def test_random_forms_never_5xx(http, form) -> None:
    body = urlencode(form)
    response = http.post("/oidc/token", data=body, content_type="application/x-www-form-urlencoded")
    assert_oauth_error(response)


@FUZZ
@given(header=JSONISH, claims=JSONISH, signature=st.binary(max_size=80))
def test_random_assertions_never_5xx(http, header, claims, signature) -> None:
    try:
        token = unsigned(header, claims, signature)
    except (TypeError, ValueError):
        token = "x.y.z"
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": token,
    }
    body = urlencode(form)
    response = http.post("/oidc/token", data=body, content_type="application/x-www-form-urlencoded")
    assert_oauth_error(response)


@FUZZ
@given(raw=st.binary(max_size=120))
def test_random_basic_headers_never_5xx(http, raw) -> None:
    header = "Basic " + base64.b64encode(raw).decode()
    response = http.post(
        "/oidc/token", data={"grant_type": "client_credentials"}, headers={"Authorization": header}
    )
    assert_oauth_error(response)


@FUZZ
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "application/json", "multipart/form-data", ""]
    ),
)
def test_random_bodies_never_5xx(http, body, content_type) -> None:
    response = http.post("/oidc/token", data=body, content_type=content_type)
    assert_oauth_error(response)
    json.dumps(response.get_json())
