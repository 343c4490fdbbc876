"""users at scale: an index per list filter in the list order, live-user counters kept by
triggers, and a shared random secret for signing list cursors

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ALIVE = "deleted_at IS NULL"
_LOCK_CANDIDATE = "deleted_at IS NULL AND (locked OR locked_until IS NOT NULL)"

# name, the filter's columns between tenant_id and (created_at, id), the partial predicate
_INDEXES: list[tuple[str, list[str], str]] = [
    ("ix_users_list", [], _ALIVE),
    ("ix_users_list_username_key", ["username_key"], _ALIVE),
    ("ix_users_list_email", ["email"], _ALIVE),
    ("ix_users_list_client_user_id", ["client_user_id"], _ALIVE),
    ("ix_users_list_client_id", ["client_id"], _ALIVE),
    ("ix_users_list_locked", [], _LOCK_CANDIDATE),
]

# PostgreSQL: bulk inserts and hard deletes are counted once per statement from the
# transition tables (a million-row seed is one upsert, not a million updates of one row);
# a soft delete or undelete is counted per row, only when liveness changes. A concurrent
# second soft delete of the same row waits for the first, then sees it already deleted,
# so it is not counted twice.
_PG_FUNCTIONS = """
CREATE FUNCTION users_count_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO user_counts (tenant_id, client_id, live)
        SELECT tenant_id, COALESCE(client_id, ''), count(*) FROM changed_rows
        WHERE deleted_at IS NULL GROUP BY 1, 2
        ON CONFLICT (tenant_id, client_id) DO UPDATE SET live = user_counts.live + EXCLUDED.live;
    ELSE
        UPDATE user_counts SET live = user_counts.live - gone.n
        FROM (SELECT tenant_id, COALESCE(client_id, '') AS client_id, count(*) AS n
              FROM changed_rows WHERE deleted_at IS NULL GROUP BY 1, 2) AS gone
        WHERE user_counts.tenant_id = gone.tenant_id AND user_counts.client_id = gone.client_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION users_count_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.deleted_at IS NULL THEN
        UPDATE user_counts SET live = live - 1
        WHERE tenant_id = OLD.tenant_id AND client_id = COALESCE(OLD.client_id, '');
    END IF;
    IF NEW.deleted_at IS NULL THEN
        INSERT INTO user_counts (tenant_id, client_id, live)
        VALUES (NEW.tenant_id, COALESCE(NEW.client_id, ''), 1)
        ON CONFLICT (tenant_id, client_id) DO UPDATE SET live = user_counts.live + 1;
    END IF;
    RETURN NULL;
END
$$;
"""
_PG_TRIGGERS = [
    "CREATE TRIGGER users_count_insert AFTER INSERT ON users REFERENCING NEW TABLE AS"
    " changed_rows FOR EACH STATEMENT EXECUTE FUNCTION users_count_statement()",
    "CREATE TRIGGER users_count_delete AFTER DELETE ON users REFERENCING OLD TABLE AS"
    " changed_rows FOR EACH STATEMENT EXECUTE FUNCTION users_count_statement()",
    "CREATE TRIGGER users_count_update AFTER UPDATE OF deleted_at, tenant_id, client_id"
    " ON users FOR EACH ROW WHEN ((OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)"
    " OR OLD.tenant_id <> NEW.tenant_id OR OLD.client_id IS DISTINCT FROM NEW.client_id)"
    " EXECUTE FUNCTION users_count_row()",
]
_SQLITE_UP = """INSERT INTO user_counts (tenant_id, client_id, live)
        VALUES (NEW.tenant_id, COALESCE(NEW.client_id, ''), 1)
        ON CONFLICT (tenant_id, client_id) DO UPDATE SET live = live + 1;"""
_SQLITE_DOWN = """UPDATE user_counts SET live = live - 1
        WHERE tenant_id = OLD.tenant_id AND client_id = COALESCE(OLD.client_id, '');"""
# SQLite runs one writer at a time, so per-row triggers are exact there.
_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER users_count_insert AFTER INSERT ON users
    WHEN NEW.deleted_at IS NULL BEGIN {_SQLITE_UP} END""",
    f"""CREATE TRIGGER users_count_delete AFTER DELETE ON users
    WHEN OLD.deleted_at IS NULL BEGIN {_SQLITE_DOWN} END""",
    f"""CREATE TRIGGER users_count_update_old AFTER UPDATE OF deleted_at, tenant_id, client_id
    ON users WHEN OLD.deleted_at IS NULL AND (NEW.deleted_at IS NOT NULL
    OR OLD.tenant_id <> NEW.tenant_id OR OLD.client_id IS NOT NEW.client_id)
    BEGIN {_SQLITE_DOWN} END""",
    f"""CREATE TRIGGER users_count_update_new AFTER UPDATE OF deleted_at, tenant_id, client_id
    ON users WHEN NEW.deleted_at IS NULL AND (OLD.deleted_at IS NOT NULL
    OR OLD.tenant_id <> NEW.tenant_id OR OLD.client_id IS NOT NEW.client_id)
    BEGIN {_SQLITE_UP} END""",
]


def upgrade() -> None:
    op.create_table(
        "user_counts",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("live", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_user_counts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "client_id", name=op.f("pk_user_counts")),
    )
    secrets_table = op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_secrets")),
    )
    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(
        secrets_table, [{"name": "list_cursor", "value": secrets.token_hex(32), "created_at": now}]
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(_PG_FUNCTIONS)
    # Creating the triggers locks users against writes until this transaction commits,
    # so the backfill below counts exactly the rows the triggers will go on from.
    for statement in _PG_TRIGGERS if postgresql else _SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute(
        "INSERT INTO user_counts (tenant_id, client_id, live)"
        " SELECT tenant_id, COALESCE(client_id, ''), count(*) FROM users"
        " WHERE deleted_at IS NULL GROUP BY tenant_id, COALESCE(client_id, '')"
    )
    if postgresql:
        # CONCURRENTLY cannot run in a transaction; it builds each index without blocking
        # writes to a live users table.
        with op.get_context().autocommit_block():
            for name, columns, where in _INDEXES:
                op.create_index(
                    name,
                    "users",
                    ["tenant_id", *columns, "created_at", "id"],
                    postgresql_where=sa.text(where),
                    postgresql_concurrently=True,
                    if_not_exists=True,
                )
    else:
        for name, columns, where in _INDEXES:
            op.create_index(
                name,
                "users",
                ["tenant_id", *columns, "created_at", "id"],
                sqlite_where=sa.text(where),
            )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, _columns, _where in reversed(_INDEXES):
        op.drop_index(name, table_name="users")
    if postgresql:
        for trigger in ("users_count_update", "users_count_delete", "users_count_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON users")
        op.execute("DROP FUNCTION IF EXISTS users_count_row()")
        op.execute("DROP FUNCTION IF EXISTS users_count_statement()")
    else:
        for trigger in (
            "users_count_update_new",
            "users_count_update_old",
            "users_count_delete",
            "users_count_insert",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.drop_table("server_secrets")
    op.drop_table("user_counts")
