"""X-Request-ID: echoed when the caller's value is acceptable, generated otherwise, on every
response (errors included), and carried by idp's log lines and audit events."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy.exc import OperationalError

from idp.models import AuditEvent, db
from idp.observability.logs import acceptable_request_id
from tests.oauth.helpers import basic, make_user, password_client

GENERATED = re.compile(r"^[0-9a-f]{32}$")


def test_a_callers_id_is_echoed(http) -> None:
    response = http.get("/healthz", headers={"X-Request-ID": "abc"})
    assert response.headers["X-Request-ID"] == "abc"


def test_an_id_is_generated_when_none_was_sent(http) -> None:
    first = http.get("/healthz").headers["X-Request-ID"]
    second = http.get("/healthz").headers["X-Request-ID"]
    assert GENERATED.match(first) and GENERATED.match(second)
    assert first != second


@pytest.mark.parametrize(
    "sent",
    ["x" * 129, "caf\u00e9", "a\x7fb", "tab\there"],
    ids=["too-long", "non-ascii", "delete-char", "tab"],
)
def test_an_unacceptable_id_is_replaced(http, sent: str) -> None:
    response = http.get("/healthz", headers={"X-Request-ID": sent})
    assert GENERATED.match(response.headers["X-Request-ID"])


def test_the_longest_acceptable_id_is_kept(http) -> None:
    sent = "a-Z_0.9 ~!" + "x" * 118
    assert len(sent) == 128
    assert http.get("/healthz", headers={"X-Request-ID": sent}).headers["X-Request-ID"] == sent


def test_acceptable_ids() -> None:
    assert acceptable_request_id("abc") and acceptable_request_id("x" * 128)
    for bad in (None, "", "x" * 129, "a\nb", "a\rb", "\u00e9"):
        assert not acceptable_request_id(bad)


def test_error_responses_carry_it(app, http, monkeypatch) -> None:
    sent = {"X-Request-ID": "err-1"}
    assert http.get("/no-such-path", headers=sent).status_code == 404
    bad = http.post("/oidc/token", data={"grant_type": "password"}, headers=sent)
    assert bad.status_code in (400, 401)
    assert bad.headers["X-Request-ID"] == "err-1"
    unauthorised = http.get("/users", headers=sent)
    assert unauthorised.status_code == 401 and unauthorised.headers["X-Request-ID"] == "err-1"
    too_big = http.post(
        "/oidc/token", data={"grant_type": "x" * 70_000}, headers={"X-Request-ID": "big"}
    )
    assert too_big.status_code == 413 and too_big.headers["X-Request-ID"] == "big"

    def outage(*_: object, **__: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("down"))

    monkeypatch.setattr("idp.json_api.authenticate", outage)
    down = http.get("/users", headers={"X-Request-ID": "down"})
    assert down.status_code == 503 and down.headers["X-Request-ID"] == "down"

    def bug(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("idp.json_api.authenticate", bug)
    broken = http.get("/users")
    assert broken.status_code == 500 and GENERATED.match(broken.headers["X-Request-ID"])


def test_the_audit_event_of_a_request_carries_its_id(app, http) -> None:
    client = password_client(app)
    make_user(app, "alice")
    form = {"grant_type": "password", "username": "alice", "password": "wrong-password-1"}
    headers = basic(*client) | {"X-Request-ID": "abc"}
    response = http.post("/oidc/token", data=form, headers=headers)
    assert response.status_code == 400 and response.headers["X-Request-ID"] == "abc"
    with app.app_context():
        events = db.session.query(AuditEvent).filter_by(event="login_failure").all()
        assert [e.request_id for e in events] == ["abc"]
        created = db.session.query(AuditEvent).filter_by(event="user_created").one()
        assert created.request_id is None  # created outside any request


@pytest.fixture
def idp_log() -> Iterator[io.StringIO]:
    """What idp's own log handler writes, with its real format."""
    handler = logging.getLogger("idp").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    captured = io.StringIO()
    previous = handler.setStream(captured)
    try:
        yield captured
    finally:
        handler.setStream(previous)


def test_log_lines_carry_it(app, http, idp_log) -> None:
    client = password_client(app)
    form = {"grant_type": "password", "username": "nobody", "password": "wrong-password-1"}
    http.post("/oidc/token", data=form, headers=basic(*client) | {"X-Request-ID": "log-me"})
    lines = [line for line in idp_log.getvalue().splitlines() if "login_failure" in line]
    assert lines and all("request_id=log-me" in line for line in lines)
    logging.getLogger("idp.test").info("outside a request")
    assert "request_id=- outside a request" in idp_log.getvalue()


def test_a_live_server_echoes_it_and_logs_it(app, idp_env, live_server) -> None:
    base_url = live_server(idp_env, workers=1)
    response = requests.get(f"{base_url}/healthz", headers={"X-Request-ID": "live-1"}, timeout=10)
    assert response.headers["X-Request-ID"] == "live-1"
    generated = requests.get(f"{base_url}/no-such-path", timeout=10)
    assert generated.status_code == 404 and GENERATED.match(generated.headers["X-Request-ID"])
    server = live_server.servers[-1]
    log = server.stdout_path.read_text() + server.stderr_path.read_text()
    assert "request_id=live-1" in log
