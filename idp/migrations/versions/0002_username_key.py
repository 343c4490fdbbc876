"""usernames unique by their RFC 8265 comparison form

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:00:00.000000
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from typing import NamedTuple

import precis_i18n
import sqlalchemy as sa
from alembic import op

from idp.errors import IdpError

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ALIVE = sa.text("deleted_at IS NULL")

# Lightweight tables: the migration must not depend on today's ORM models.
_users = sa.table(
    "users",
    sa.column("id", sa.String),
    sa.column("tenant_id", sa.Integer),
    sa.column("username", sa.String),
    sa.column("username_key", sa.String),
    sa.column("deleted_at"),
)
_tenants = sa.table("tenants", sa.column("id", sa.Integer), sa.column("name", sa.String))


class UsernameMigrationError(IdpError):
    """Existing live usernames cannot be made unique by their comparison form."""


class InvalidUsername(Exception):
    pass


# The comparison form as this revision defines it, kept here so that the upgrade computes
# the same keys whatever later code does with usernames: RFC 8265's UsernameCaseMapped
# profile, one of the confusable scripts at most, and a key of at most 200 characters
# (the column's length).
_PROFILE = precis_i18n.get_profile("UsernameCaseMapped")
_CONFUSABLE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")
_MAX_KEY_LENGTH = 200


def username_key(name: str) -> str:
    try:
        key = _PROFILE.enforce(name)
    except UnicodeEncodeError as exc:
        where = f"U+{ord(name[exc.start]):04X} at " if exc.start < len(name) else ""
        raise InvalidUsername(
            f"username {name!r} is not allowed: {where}position {exc.start} ({exc.reason})"
        ) from None
    scripts = {
        unicodedata.name(char, "").split(" ", 1)[0]
        for char in key
        if unicodedata.category(char).startswith("L")
    } & set(_CONFUSABLE_SCRIPTS)
    if len(scripts) > 1:
        raise InvalidUsername(f"username {name!r} is not allowed: it mixes scripts")
    if len(key) > _MAX_KEY_LENGTH:
        raise InvalidUsername(f"username {name!r} is not allowed: longer than {_MAX_KEY_LENGTH}")
    return key


# A NamedTuple, not a dataclass: Alembic loads this file outside sys.modules, where
# dataclasses cannot resolve postponed annotations.
class _NamedUser(NamedTuple):
    id: str
    tenant: str  # "<id> (<name>)", as the operator's report shows it
    username: str
    live: bool


def upgrade() -> None:
    users = _named_users()
    keys, problems = _keys(users)
    # Refuse before any DDL: SQLite runs ALTER TABLE outside the transaction, so
    # a refusal after it would leave a column behind that the rerun trips over.
    if problems:
        raise UsernameMigrationError(
            "cannot make usernames unique by their RFC 8265 form; delete or fix these "
            "live users, then run 'idp init' again: " + "; ".join(problems)
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("username_key", sa.String(length=200), nullable=True))
    _fill(keys)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_users_tenant_username", sqlite_where=_ALIVE, postgresql_where=_ALIVE
        )
        batch_op.create_index(
            "uq_users_tenant_username_key",
            ["tenant_id", "username_key"],
            unique=True,
            sqlite_where=_ALIVE,
            postgresql_where=_ALIVE,
        )


def downgrade() -> None:
    # Equal keys imply equal names, so the old index on ``username`` cannot collide.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_users_tenant_username_key", sqlite_where=_ALIVE, postgresql_where=_ALIVE
        )
        batch_op.create_index(
            "uq_users_tenant_username",
            ["tenant_id", "username"],
            unique=True,
            sqlite_where=_ALIVE,
            postgresql_where=_ALIVE,
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("username_key")


def _named_users() -> list[_NamedUser]:
    query = (
        sa.select(
            _users.c.id,
            _users.c.tenant_id,
            _tenants.c.name,
            _users.c.username,
            _users.c.deleted_at.is_(None),
        )
        .join(_tenants, _tenants.c.id == _users.c.tenant_id)
        .where(_users.c.username.is_not(None))
        .order_by(_users.c.tenant_id, _users.c.username, _users.c.id)
    )
    return [
        _NamedUser(id=row[0], tenant=f"{row[1]} ({row[2]})", username=row[3], live=bool(row[4]))
        for row in op.get_bind().execute(query)
    ]


def _keys(users: list[_NamedUser]) -> tuple[dict[str, str], list[str]]:
    """Each user's key, and what stops the upgrade: live names invalid or colliding."""
    keys: dict[str, str] = {}
    problems: list[str] = []
    live_by_key: dict[tuple[str, str], list[_NamedUser]] = defaultdict(list)
    for user in users:
        try:
            keys[user.id] = username_key(user.username)
        except InvalidUsername as exc:
            # A deleted user's name is never looked up again: it keeps a NULL key
            # rather than blocking the upgrade on a row no operator command can fix.
            if user.live:
                problems.append(f"tenant {user.tenant}: user {user.id}: {exc}")
            continue
        if user.live:
            live_by_key[(user.tenant, keys[user.id])].append(user)
    for (tenant, key), same in live_by_key.items():
        if len(same) > 1:
            names = ", ".join(f"{u.username!r} (user {u.id})" for u in same)
            problems.append(f"tenant {tenant}: {names} are the same name {key!r}")
    return keys, problems


def _fill(keys: dict[str, str]) -> None:
    if not keys:
        return
    update = (
        sa.update(_users)
        .where(_users.c.id == sa.bindparam("user_id"))
        .values(username_key=sa.bindparam("key"))
    )
    op.get_bind().execute(update, [{"user_id": i, "key": k} for i, k in keys.items()])
