"""``idp audit list``: newest first, --since (duration or RFC 3339), --user, --limit, --json,
and the request id of the request that caused each event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text

from idp.admin.audit import list_events, parse_since
from idp.errors import IdpError
from idp.models import AuditEvent, db, utcnow
from tests.oauth.helpers import basic, make_user, password_client
from tests.users.conftest import client_token
from tests.users.test_list_plans import captured, plan_of

FIELDS = ["id", "at", "event", "tenant", "client_id", "user_id", "request_id", "detail"]


def audit_json(run_idp: Any, *args: str) -> list[dict[str, Any]]:
    result = run_idp("audit", "list", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def seed(app: Any, *events: tuple[str, timedelta, str | None]) -> None:
    """Events (name, age, user_id) recorded directly, as old as asked."""
    now = utcnow()
    with app.app_context():
        for name, age, user_id in events:
            db.session.add(
                AuditEvent(event=name, at=now - age, tenant="default", user_id=user_id, detail={})
            )
        db.session.commit()


def test_the_event_of_a_request_shows_its_request_id(app, http, run_idp) -> None:
    client = password_client(app)
    make_user(app, "alice")
    form = {"grant_type": "password", "username": "alice", "password": "not-the-password-1"}
    response = http.post("/oidc/token", data=form, headers=basic(*client) | {"X-Request-ID": "abc"})
    assert response.status_code == 400 and response.headers["X-Request-ID"] == "abc"
    events = audit_json(run_idp)
    assert list(events[0]) == FIELDS
    assert events[0]["event"] == "login_failure" and events[0]["request_id"] == "abc"
    assert events[0]["client_id"] == client[0] and events[0]["tenant"] == "default"
    assert events[0]["detail"] == {"reason": "bad_password"}
    assert datetime.fromisoformat(events[0]["at"]).tzinfo is not None
    assert [e["event"] for e in events] == ["login_failure", "user_created", "client_created"]


def test_a_user_created_through_the_api_carries_the_request_id(app, http, run_idp) -> None:
    token = client_token(http, app, scope="user:create")
    created = http.post(
        "/users",
        json={"username": "bob", "scopes": []},
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "create-bob-1"},
    )
    assert created.status_code == 201, created.get_json()
    (event,) = [e for e in audit_json(run_idp) if e["event"] == "user_created"]
    assert event["request_id"] == "create-bob-1"
    assert event["user_id"] == created.get_json()["userId"]


def test_newest_first_with_since_user_and_limit(app, run_idp) -> None:
    seed(
        app,
        ("old", timedelta(days=100), "u1"),
        ("week", timedelta(days=7), "u2"),
        ("hour", timedelta(minutes=50), "u1"),
        ("now", timedelta(seconds=5), "u1"),
    )
    assert [e["event"] for e in audit_json(run_idp)] == ["now", "hour", "week", "old"]
    ids = [e["id"] for e in audit_json(run_idp)]
    assert ids == sorted(ids, reverse=True)
    assert [e["event"] for e in audit_json(run_idp, "--since", "1h")] == ["now", "hour"]
    assert [e["event"] for e in audit_json(run_idp, "--since", "30m")] == ["now"]
    assert [e["event"] for e in audit_json(run_idp, "--since", "3600s")] == ["now", "hour"]
    assert [e["event"] for e in audit_json(run_idp, "--since", "90d")] == ["now", "hour", "week"]
    # The same durations as `keys rotate --if-older-than`, weeks included.
    assert [e["event"] for e in audit_json(run_idp, "--since", "2w")] == ["now", "hour", "week"]
    since = (utcnow() - timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [e["event"] for e in audit_json(run_idp, "--since", since)] == ["now", "hour", "week"]
    assert [e["event"] for e in audit_json(run_idp, "--user", "u1")] == ["now", "hour", "old"]
    assert [e["event"] for e in audit_json(run_idp, "--user", "u1", "--limit", "2")] == [
        "now",
        "hour",
    ]
    assert audit_json(run_idp, "--user", "nobody") == []


def test_the_default_limit_is_100(app, run_idp) -> None:
    seed(app, *[(f"e{i}", timedelta(seconds=i), None) for i in range(105)])
    events = audit_json(run_idp)
    assert len(events) == 100 and events[0]["event"] == "e0"


def test_plain_output_is_one_line_per_event(app, run_idp) -> None:
    seed(app, ("first", timedelta(minutes=2), "u1"), ("second", timedelta(minutes=1), None))
    result = run_idp("audit", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "second" in lines[0] and "user_id=u1" in lines[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "90x"], "--since must be a duration"),
        (["--since", "yesterday"], "--since must be a duration"),
        (["--since", "2025-01-31"], "--since must be a duration"),
        (["--since", "2025-01-31T12:00:00"], "--since must be a duration"),
        (["--since", "999999999d"], "--since"),
        (["--limit", "0"], "--limit must be"),
        (["--limit", "ten"], "--limit must be"),
        (["--limit", "-3"], "--limit must be"),
    ],
)
def test_bad_values_are_one_clear_line(app, run_idp, args: list[str], message: str) -> None:
    result = run_idp("audit", "list", *args)
    assert result.returncode != 0
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_parse_since() -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert parse_since("90d", now) == now - timedelta(days=90)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2025-05-31T10:00:00+02:00", now) == datetime(2025, 5, 31, 8, tzinfo=UTC)
    assert parse_since("2025-05-31T10:00:00Z", now) == datetime(2025, 5, 31, 10, tzinfo=UTC)
    with pytest.raises(IdpError):
        parse_since("12", now)


@pytest.mark.production_only
def test_one_users_events_are_read_from_their_index(app) -> None:
    """``--user`` on PostgreSQL is an index range read, newest first: no scan of the whole
    trail and no sort, however many events other users have."""
    now = utcnow()
    rows = [
        {"event": "login", "at": now - timedelta(seconds=n), "user_id": f"user-{n % 40}"}
        for n in range(4000)
    ]
    with app.app_context():
        db.session.execute(insert(AuditEvent), [row | {"detail": {}} for row in rows])
        db.session.commit()
        db.session.execute(text("ANALYZE audit_events"))
        db.session.commit()
        # A small table tempts the planner to scan: forbid it, so the test shows that the
        # query can be answered from the index at all.
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
        with captured("audit_events") as statements:
            events = list_events(None, "user-7", 20)
        assert [e.at for e in events] == [now - timedelta(seconds=n) for n in range(7, 807, 40)]
        assert len(statements) == 1
        plan = plan_of(*statements[0])
        kinds = [node["Node Type"] for node in plan]
        assert "Seq Scan" not in kinds and "Sort" not in kinds, kinds
        assert "ix_audit_events_user_id_at" in {node.get("Index Name") for node in plan}
        db.session.rollback()
