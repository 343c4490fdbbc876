"""audit events: an index for one user's events, newest first

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEX = "ix_audit_events_user_id_at"
COLUMNS = ["user_id", "at", "id"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # CONCURRENTLY cannot run in a transaction; it builds the index without blocking
        # the audit writes of a live server.
        with op.get_context().autocommit_block():
            op.create_index(
                INDEX, "audit_events", COLUMNS, postgresql_concurrently=True, if_not_exists=True
            )
    else:
        op.create_index(INDEX, "audit_events", COLUMNS)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="audit_events")
