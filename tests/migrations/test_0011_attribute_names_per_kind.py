"""Migration 0011: an attribute name is unique among one user's attributes of one kind."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError


def add_attribute(sql, attribute_id: str, name: str, *, personal: bool) -> None:
    sql(
        "INSERT INTO user_attributes (id, user_id, name, type, value, is_personal, created_at)"
        " VALUES (:id, 'u1', :name, 'STRING', 'v', :personal, '2026-01-01 10:00:00')",
        id=attribute_id, name=name, personal=personal,
    )  # fmt: skip


def attributes(sql) -> list[tuple[str, str, bool]]:
    rows = sql("SELECT id, name, is_personal FROM user_attributes ORDER BY id")
    return [(row.id, row.name, bool(row.is_personal)) for row in rows]


@pytest.fixture
def at_0010(migrator, sql) -> None:
    migrator.up("0010")
    sql("INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', '2026-01-01')")
    sql(
        "INSERT INTO users (id, tenant_id, provider, scopes, user_type, locked, bad_attempts,"
        " created_at, updated_at) VALUES ('u1', 1, 'local', '[]', 'user', false, 0,"
        " '2026-01-01', '2026-01-01')"
    )


def test_names_become_unique_per_kind_and_rows_are_kept(at_0010, migrator, sql) -> None:
    add_attribute(sql, "a1", "segment", personal=False)
    add_attribute(sql, "a2", "pin", personal=True)
    with pytest.raises(IntegrityError):  # before: one name per user, whatever the kind
        add_attribute(sql, "a3", "segment", personal=True)

    migrator.up("0011")

    assert attributes(sql) == [("a1", "segment", False), ("a2", "pin", True)]
    add_attribute(sql, "a3", "segment", personal=True)
    add_attribute(sql, "a4", "pin", personal=False)
    for name, personal in (("segment", True), ("segment", False), ("pin", True)):
        with pytest.raises(IntegrityError):
            add_attribute(sql, "a5", name, personal=personal)
    assert len(attributes(sql)) == 4


def test_the_downgrade_deletes_nothing_and_refuses_shared_names(
    at_0010, migrator, sql, caplog
) -> None:
    migrator.up("0011")
    add_attribute(sql, "a1", "segment", personal=False)
    add_attribute(sql, "a2", "segment", personal=True)
    with pytest.raises(SystemExit):  # Flask-Migrate logs the error and exits 1
        migrator.down("0010")
    assert "same name (user u1, name 'segment')" in caplog.text
    assert len(attributes(sql)) == 2
    sql("DELETE FROM user_attributes WHERE id = 'a2'")
    migrator.down("0010")  # control: with no shared name the downgrade goes through
    assert attributes(sql) == [("a1", "segment", False)]
    with pytest.raises(IntegrityError):
        add_attribute(sql, "a3", "segment", personal=True)
