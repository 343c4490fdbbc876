"""Every /users list query is an index range read on PostgreSQL: no sequential scan of
users and no sort, for the page and for its total."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from idp.models import db
from idp.registrations.tenants import require_tenant
from idp.users import service
from tests.users.test_paging import seed

pytestmark = pytest.mark.production_only


@contextmanager
def captured(table: str = "users") -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if f"FROM {table}" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)


def nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def plan_of(statement: str, parameters: Any) -> list[dict]:
    connection = db.session.connection()
    row = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar()
    document = json.loads(row) if isinstance(row, str) else row
    return list(nodes(document[0]["Plan"]))


CASES = [
    ({}, {}, "ix_users_list"),
    ({}, {"offset": 100}, "ix_users_list"),
    ({}, {"after": True}, "ix_users_list"),
    ({"email": "user-7@example.com"}, {}, "ix_users_list_email"),
    ({"clientUserId": "cu-user-7"}, {}, "ix_users_list_client_user_id"),
    ({"username": "USER-7"}, {}, "ix_users_list_username_key"),
    ({"clientId": "crm"}, {}, "ix_users_list_client_id"),
    ({"locked": True}, {}, "ix_users_list_locked"),
    ({"locked": False}, {}, "ix_users_list"),
]


@pytest.fixture
def seeded(app: Any) -> Any:
    seed(app, 2700, name="user")
    seed(app, 300, name="crm", client_id="crm")
    seed(app, 20, name="barred", locked=True)
    with app.app_context():
        db.session.execute(
            text(
                "UPDATE users SET email = username || '@example.com',"
                " client_user_id = 'cu-' || username"
            )
        )
        db.session.commit()
        db.session.execute(text("ANALYZE users"))
        db.session.commit()
    return app


def test_list_queries_read_their_index(seeded) -> None:
    # One seeded database for every case: seeding is most of this test's time.
    for filters, paging, index in CASES:
        check_plans(seeded, filters, paging, index)


def check_plans(app: Any, filters: dict, paging: dict, index: str) -> None:
    with app.app_context():
        tenant_id = require_tenant("default").id
        after = None
        if paging.get("after"):
            after = service.list_page(tenant_id, filters, 50).next_position
        # Tiny tables tempt the planner to scan: forbid it, so the test shows that the
        # query can use the index at all (the data-scale bench shows it is chosen at 1M).
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
        with captured() as statements:
            page = service.list_page(tenant_id, filters, 50, paging.get("offset", 0), after)
        assert page.users, filters
        assert statements, "no list query ran"
        for statement, parameters in statements:
            plan = plan_of(statement, parameters)
            kinds = [node["Node Type"] for node in plan]
            assert "Seq Scan" not in kinds, (filters, statement, kinds)
            assert "Sort" not in kinds and "Incremental Sort" not in kinds, (statement, kinds)
            used = {node.get("Index Name") for node in plan} - {None}
            if "count(" in statement:
                assert used, (filters, statement, kinds)
            else:
                assert index in used, (filters, statement, used)
        db.session.rollback()
