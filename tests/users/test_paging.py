"""Keyset paging of GET /users: nextCursor and after, tamper-proof cursors, the offset cap,
and totals read from the live-user counters."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from idp.models import User, db
from idp.models.base import new_uuid
from idp.models.users import UserCount
from idp.registrations.tenants import create_tenant, require_tenant
from tests.users.conftest import client_token
from tests.users.test_users_api import assert_problem, create

T0 = datetime(2020, 1, 1, tzinfo=UTC)
SEED_BATCH = 500


def seed(
    app: Any, count: int, tenant: str = "default", name: str = "seed", **fields: Any
) -> list[str]:
    """Insert users with SQL, as a bulk load would (the counters must follow)."""
    with app.app_context():
        tenant_id = require_tenant(tenant).id
        rows = [
            {
                "id": new_uuid(),
                "tenant_id": tenant_id,
                "username": f"{name}-{i}",
                "username_key": f"{name}-{i}",
                # Pairs share a creation time: the id breaks the tie in the list order.
                "created_at": T0 + timedelta(seconds=i // 2),
                "updated_at": T0,
                "scopes": [],
                **fields,
            }
            for i in range(count)
        ]
        # In batches: the app waits at most IDP_DATABASE_TIMEOUT for each answer, and one
        # statement of ten thousand rows can take longer on a loaded machine.
        for start in range(0, count, SEED_BATCH):
            db.session.execute(insert(User), rows[start : start + SEED_BATCH])
        db.session.commit()
        return [row["id"] for row in sorted(rows, key=lambda r: (r["created_at"], r["id"]))]


def live_count(app: Any, tenant: str = "default") -> int:
    with app.app_context():
        tenant_id = require_tenant(tenant).id
        query = select(func.count()).where(User.tenant_id == tenant_id, User.deleted_at.is_(None))
        return db.session.scalar(query.select_from(User)) or 0


def walk(http: Any, headers: dict[str, str], query: str) -> tuple[list[str], list[dict]]:
    ids: list[str] = []
    pages: list[dict] = []
    url = f"/users?{query}"
    while True:
        response = http.get(url, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        page = response.get_json()
        pages.append(page)
        ids += [user["userId"] for user in page["users"]]
        if page["nextCursor"] is None:
            return ids, pages
        url = f"/users?{query}&after={page['nextCursor']}"


def test_after_walks_every_user_once_in_the_list_order(http, app, admin) -> None:
    expected = seed(app, 23)
    ids, pages = walk(http, admin, "limit=5")
    assert ids == expected
    assert [len(p["users"]) for p in pages] == [5, 5, 5, 5, 3]
    assert all(p["total"] == 23 and p["limit"] == 5 for p in pages)
    assert pages[0]["offset"] == 0 and all(p["offset"] is None for p in pages[1:])


def test_an_exactly_full_last_page_has_no_cursor(http, app, admin) -> None:
    seed(app, 10)
    page = http.get("/users?limit=10", headers=admin).get_json()
    assert len(page["users"]) == 10 and page["nextCursor"] is None
    empty = http.get("/users?email=nobody@example.com", headers=admin).get_json()
    assert empty == {"users": [], "limit": 50, "offset": 0, "total": 0, "nextCursor": None}


def test_an_offset_page_continues_by_after(http, app, admin) -> None:
    expected = seed(app, 12)
    page = http.get("/users?limit=4&offset=3", headers=admin).get_json()
    assert [u["userId"] for u in page["users"]] == expected[3:7]
    rest = http.get(f"/users?limit=4&after={page['nextCursor']}", headers=admin).get_json()
    assert [u["userId"] for u in rest["users"]] == expected[7:11]


@pytest.mark.parametrize(
    ("filters", "field", "value"),
    [
        ("email=crowd@example.com", "email", "crowd@example.com"),
        ("clientUserId=shared", "client_user_id", "shared"),
        ("clientId=crm", "client_id", "crm"),
    ],
)
def test_filtered_pages_by_after(http, app, admin, filters, field, value) -> None:
    seed(app, 5)
    expected = seed(app, 9, name="match", **{field: value})
    ids, pages = walk(http, admin, f"{filters}&limit=4")
    assert ids == expected
    assert all(p["total"] == 9 for p in pages)


def test_username_and_locked_filters_page_by_after(http, app, admin) -> None:
    seed(app, 4)
    locked = seed(app, 3, name="locked", locked=True)
    lapsed = seed(app, 2, name="lapsed", locked_until=T0)  # a bad-password lock run out
    barred = seed(app, 2, name="barred", locked_until=datetime(9999, 1, 1, tzinfo=UTC))
    ids, pages = walk(http, admin, "locked=true&limit=2")
    assert sorted(ids) == sorted(locked + barred)
    assert all(p["total"] == 5 for p in pages)
    ids, pages = walk(http, admin, "locked=false&limit=3")
    assert len(ids) == 4 + len(lapsed) and all(p["total"] == 6 for p in pages)
    page = http.get("/users?username=SEED-1", headers=admin).get_json()
    assert page["total"] == 1 and page["users"][0]["username"] == "seed-1"


def test_totals_follow_creates_deletes_and_bulk_sql(http, app, admin) -> None:
    seed(app, 30)
    made = [create(http, admin, username=f"api-{i}").get_json()["userId"] for i in range(3)]
    assert http.delete(f"/users/{made[0]}", headers=admin).status_code == 204
    assert http.delete(f"/users/{made[0]}", headers=admin).status_code == 404
    with app.app_context():
        db.session.execute(User.__table__.delete().where(User.username.like("seed-1_")))
        db.session.commit()
    total = http.get("/users?limit=1", headers=admin).get_json()["total"]
    assert total == live_count(app) == 30 - 10 + 2


def test_cursors_are_bound_to_tenant_and_filters(http, app, admin) -> None:
    seed(app, 6)
    with app.app_context():
        create_tenant("acme")
        db.session.commit()
    seed(app, 6, tenant="acme")
    outsider = {"Authorization": f"Bearer {client_token(http, app, tenant='acme')}"}
    cursor = http.get("/users?limit=2", headers=admin).get_json()["nextCursor"]
    body = assert_problem(http.get(f"/users?limit=2&after={cursor}", headers=outsider), 400)
    assert "cursor" in body["detail"]
    assert_problem(http.get(f"/users?limit=2&locked=false&after={cursor}", headers=admin), 400)
    assert_problem(http.get(f"/users?limit=2&email=x@y.z&after={cursor}", headers=admin), 400)
    # The limit may change between pages.
    assert http.get(f"/users?limit=3&after={cursor}", headers=admin).status_code == 200


def _flip(cursor: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_forged_and_truncated_cursors_are_400_problems(http, app, admin) -> None:
    seed(app, 6)
    cursor = http.get("/users?limit=2", headers=admin).get_json()["nextCursor"]
    forged = [
        _flip(cursor, 5),  # an earlier place in the list
        _flip(cursor, 20),  # another user id
        _flip(cursor, len(cursor) * 3 // 4 - 1),  # the tag
        _flip(cursor, 0),  # the version
        cursor[:-1],
        cursor[:10],
        cursor + "A",
        "A",
        "AAAA",
        "-" * 60,
        base64.urlsafe_b64encode(b"\x01" + b"\xff" * 40).decode().rstrip("="),
    ]
    for bad in forged:
        body = assert_problem(http.get(f"/users?limit=2&after={bad}", headers=admin), 400)
        assert body["errors"][0]["field"] == "after", bad
    for bad in ("not a cursor", "a" * 201, "%00", "ab=="):
        assert_problem(http.get(f"/users?after={bad}", headers=admin), 400)


def test_offset_is_capped_and_not_combined_with_after(http, app, admin) -> None:
    seed(app, 3)
    assert http.get("/users?offset=10000", headers=admin).get_json()["users"] == []
    body = assert_problem(http.get("/users?offset=10001", headers=admin), 400)
    assert "after" in body["detail"]
    cursor = http.get("/users?limit=1", headers=admin).get_json()["nextCursor"]
    body = assert_problem(http.get(f"/users?offset=1&after={cursor}", headers=admin), 400)
    assert "after" in body["detail"] and "offset" in body["detail"]
    assert_problem(http.get(f"/users?offset=0&after={cursor}", headers=admin), 400)


def test_counters_are_kept_per_tenant_and_client(app) -> None:
    seed(app, 4)
    seed(app, 3, name="crm", client_id="crm")
    with app.app_context():
        counts = {(row.client_id, row.live) for row in db.session.scalars(select(UserCount)).all()}
    assert counts == {("", 4), ("crm", 3)}
