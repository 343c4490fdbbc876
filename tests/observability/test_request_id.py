"""X-Request-ID: echoed when the caller's value is acceptable, generated otherwise, on every
response (errors included), and carried by idp's log lines and audit events."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy.exc import OperationalError

from idp import audit
from idp.models import AuditEvent, db
from idp.observability.logs import acceptable_request_id, request_id
from tests.oauth.helpers import basic, make_user, password_client
from tests.observability.helpers import lines_once_written

GENERATED = re.compile(r"^[0-9a-f]{32}$")


def test_a_callers_id_is_echoed(http) -> None:
    response = http.get("/healthz", headers={"X-Request-ID": "abc"})
    assert response.headers["X-Request-ID"] == "abc"


def test_an_id_is_generated_when_none_was_sent(http) -> None:
    first = http.get("/healthz").headers["X-Request-ID"]
    second = http.get("/healthz").headers["X-Request-ID"]
    assert GENERATED.match(first) and GENERATED.match(second)
    assert first != second


# Every character the id may hold, at the longest length it may have.
LONGEST = ("ABCXYZabcxyz0189._:-" * 7)[:128]
UNACCEPTABLE = {
    "fields": "x status=200 user=admin",
    "space": "a b",
    "equals": "a=b",
    "quote": 'a"b',
    "crlf": "x\r\n2026-12-03 19:00:00,000 INFO idp.audit request_id=forged",
    "lf": "x\nforged",
    "trailing-lf": "x\n",
    "tab": "tab\there",
    "delete-char": "a\x7fb",
    "too-long": LONGEST + "x",
    "non-ascii": "caf\u00e9",
    "empty": "",
}


def _sent(value: str) -> dict[str, dict[str, str]]:
    # Through the environ: the test client refuses line breaks in a header it sends.
    return {"environ_overrides": {"HTTP_X_REQUEST_ID": value}}


@pytest.mark.parametrize("sent", ["abc", LONGEST], ids=["short", "longest"])
def test_an_acceptable_id_is_kept(http, sent: str) -> None:
    assert len(LONGEST) == 128
    assert http.get("/healthz", **_sent(sent)).headers["X-Request-ID"] == sent


@pytest.mark.parametrize("sent", UNACCEPTABLE.values(), ids=UNACCEPTABLE.keys())
def test_an_unacceptable_id_is_replaced(http, sent: str) -> None:
    response = http.get("/healthz", **_sent(sent))
    assert GENERATED.match(response.headers["X-Request-ID"])


def test_acceptable_ids() -> None:
    assert acceptable_request_id("abc") and acceptable_request_id(LONGEST)
    assert not acceptable_request_id(None)
    assert not any(acceptable_request_id(bad) for bad in UNACCEPTABLE.values())


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

    monkeypatch.setattr("idp.web.json_api.authenticate", outage)
    down = http.get("/users", headers={"X-Request-ID": "down"})
    assert down.status_code == 503 and down.headers["X-Request-ID"] == "down"

    def bug(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("idp.web.json_api.authenticate", bug)
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


@pytest.mark.parametrize("sent", ["good-1", *UNACCEPTABLE.values()], ids=["good", *UNACCEPTABLE])
def test_idps_log_lines_carry_only_an_acceptable_id(app, idp_log, sent: str) -> None:
    with app.test_request_context(**_sent(sent)):
        logging.getLogger("idp.test").info("inside a request")
        used = request_id()
    assert used == sent if sent == "good-1" else GENERATED.match(used or "")
    assert idp_log.getvalue().splitlines() == [
        f"{idp_log.getvalue()[:23]} INFO idp.test request_id={used} inside a request"
    ]


def test_audit_and_app_records_are_one_line(app, idp_log) -> None:
    forged = '\r\n2026-12-03 19:00:00,000 INFO idp.audit request_id=forged {"event":"x"}\u2028'
    with app.test_request_context(**_sent("one-line")):
        audit.record("login_failure", username=f"eve{forged}", reason="unknown_user")
        logging.getLogger("idp.web.errors").warning("GET /nope%s: unavailable", forged)
        db.session.rollback()
    audit_line, app_line = idp_log.getvalue().splitlines()
    assert " INFO idp.audit request_id=one-line {" in audit_line
    event = json.loads(audit_line.split(" request_id=one-line ", 1)[1])
    assert event["username"] == f"eve{forged}"  # escaped, not lost
    assert app_line.endswith(
        " WARNING idp.web.errors request_id=one-line GET /nope\\r\\n2026-12-03 19:00:00,000"
        ' INFO idp.audit request_id=forged {"event":"x"}\\u2028: unavailable'
    )


def _raw_get(base_url: str, path: str, request_id: bytes) -> bytes:
    """A request with a header value that no HTTP library would send."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: idp\r\n")
        conn.sendall(b"X-Request-ID: " + request_id + b"\r\nConnection: close\r\n\r\n")
        return b"".join(iter(lambda: conn.recv(65536), b""))


def test_a_live_server_echoes_it_and_logs_it(app, idp_env, live_server) -> None:
    base_url = live_server(idp_env, workers=1)
    good = {"good": "live-1", "longest": LONGEST}
    # gunicorn refuses control characters in a header value (RFC 9110 5.5; tried below).
    bad = {k: v for k, v in UNACCEPTABLE.items() if v.isprintable() or k == "tab"}
    answered: dict[str, str] = {}
    for case, sent in (good | bad).items():
        response = requests.get(
            f"{base_url}/probe/{case}", headers={"X-Request-ID": sent.encode("latin-1")}, timeout=10
        )
        assert response.status_code == 404
        answered[case] = response.headers["X-Request-ID"]
    assert {case: answered[case] for case in good} == good
    assert all(GENERATED.match(answered[case]) for case in bad)

    for control in (b"\r\n2026-12-03 19:00:00,000 INFO request_id=forged", b"\n", b"\x7fforged"):
        raw = _raw_get(base_url, "/probe/control", b"x" + control)
        # Refused, or a bare LF read as the end of the line (RFC 9112 §2.2 allows it): the
        # id is then "x", and what followed it is a malformed second request.
        assert raw.startswith(b"HTTP/1.1 400 ") or b"\r\nx-request-id: x\r\n" in raw.lower()
        assert b"forged" not in raw

    server = live_server.servers[-1]
    access = lines_once_written(server.stdout_path, [f'/probe/{case}" ' for case in answered])
    for case, sent_back in answered.items():
        (line,) = [line for line in access if f'/probe/{case}" ' in line]
        assert line.endswith(f" request_id={sent_back}")
    logs = server.stdout_path.read_text() + server.stderr_path.read_text()
    assert "status=200 user=admin" not in logs and "forged" not in logs
