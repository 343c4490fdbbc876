"""users: the link of a jwt-bearer user to (issuer, subject) outlives its deletion

Until now the link was unique among live users only, so an issuer could bring a deleted
user back as a new one by asserting its subject again. Where that happened, the first
user keeps the link and the later ones lose it (their ``subject`` is cleared): none of
them can sign in through the issuer again, and no row is deleted.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEX = "uq_users_tenant_provider_subject"
COLUMNS = ["tenant_id", "provider", "subject"]
_LINKED_AND_ALIVE = sa.text("deleted_at IS NULL AND subject IS NOT NULL")
_LINKED = sa.text("subject IS NOT NULL")

_UNLINK_LATER_USERS = """
UPDATE users SET subject = NULL
WHERE subject IS NOT NULL AND EXISTS (
    SELECT 1 FROM users AS earlier
    WHERE earlier.tenant_id = users.tenant_id
      AND earlier.provider = users.provider
      AND earlier.subject = users.subject
      AND (earlier.created_at < users.created_at
           OR (earlier.created_at = users.created_at AND earlier.id < users.id))
)
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # No write to users until the new index stands: a provisioning by a running
        # server cannot slip a second link in between.
        op.execute("LOCK TABLE users IN SHARE MODE")
    op.execute(_UNLINK_LATER_USERS)
    op.drop_index(
        INDEX,
        table_name="users",
        sqlite_where=_LINKED_AND_ALIVE,
        postgresql_where=_LINKED_AND_ALIVE,
    )
    op.create_index(
        INDEX, "users", COLUMNS, unique=True, sqlite_where=_LINKED, postgresql_where=_LINKED
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="users", sqlite_where=_LINKED, postgresql_where=_LINKED)
    op.create_index(
        INDEX,
        "users",
        COLUMNS,
        unique=True,
        sqlite_where=_LINKED_AND_ALIVE,
        postgresql_where=_LINKED_AND_ALIVE,
    )
