"""Migration 0010: a jwt-bearer user's link to (issuer, subject) outlives its deletion, also
for users brought back as new ones before it."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

ISSUER = "https://dauth.example.net"


def add_user(sql, user_id: str, subject: str | None, created: str, deleted: str | None) -> None:
    sql(
        "INSERT INTO users (id, tenant_id, username, username_key, provider, subject, scopes,"
        " user_type, locked, bad_attempts, created_at, updated_at, deleted_at)"
        " VALUES (:id, 1, :id, :id, :provider, :subject, '[]', 'user', false, 0, :created,"
        " :created, :deleted)",
        id=user_id, provider=ISSUER, subject=subject, created=created, deleted=deleted,
    )  # fmt: skip


def links(sql) -> dict[str, str | None]:
    return dict(sql("SELECT id, subject FROM users ORDER BY id"))


def test_a_deleted_users_link_is_kept_and_later_copies_are_unlinked(migrator, sql) -> None:
    migrator.up("0009")
    sql("INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', '2026-01-01')")
    # "again-1" was deleted, provisioned anew as "again-2", deleted, and came back as
    # "again-3"; "alive" and "gone" each had one user.
    add_user(sql, "again-1", "0xagain", "2026-01-01 10:00:00", "2026-01-02 00:00:00")
    add_user(sql, "again-2", "0xagain", "2026-01-03 10:00:00", "2026-01-04 00:00:00")
    add_user(sql, "again-3", "0xagain", "2026-01-05 10:00:00", None)
    add_user(sql, "alive", "0xalive", "2026-01-01 10:00:00", None)
    add_user(sql, "gone", "0xgone", "2026-01-01 10:00:00", "2026-01-02 00:00:00")
    add_user(sql, "local", None, "2026-01-01 10:00:00", None)

    migrator.up("0010")

    assert links(sql) == {
        "again-1": "0xagain",  # the first user keeps the link: the issuer's subject is it
        "again-2": None,
        "again-3": None,
        "alive": "0xalive",
        "gone": "0xgone",
        "local": None,
    }
    # The database itself now refuses a new user on a deleted user's link.
    with pytest.raises(IntegrityError):
        add_user(sql, "gone-again", "0xgone", "2026-02-01 10:00:00", None)
    # Control: a new subject is linked as before.
    add_user(sql, "new", "0xnew", "2026-02-01 10:00:00", None)
    assert links(sql)["new"] == "0xnew"


def test_the_migration_goes_back_down(migrator, sql) -> None:
    migrator.up("0010")
    sql("INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', '2026-01-01')")
    add_user(sql, "gone", "0xgone", "2026-01-01 10:00:00", "2026-01-02 00:00:00")
    migrator.down("0009")
    # Before 0010 the link held among live users only.
    add_user(sql, "gone-again", "0xgone", "2026-02-01 10:00:00", None)
    assert links(sql) == {"gone": "0xgone", "gone-again": "0xgone"}
