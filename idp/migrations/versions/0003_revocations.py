"""Revocations by token, session, user and client; per-client refresh reuse grace.

The jti-only list ``revoked_access_tokens`` becomes ``revocations``, keyed by what was
revoked; its rows are carried over as ``jti:`` keys revoked at migration time.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    revocations = op.create_table(
        "revocations",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_revocations")),
    )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revocations_expires_at"), ["expires_at"], unique=False)

    connection = op.get_bind()
    old = sa.table(
        "revoked_access_tokens",
        sa.column("jti", sa.String()),
        sa.column("expires_at", sa.DateTime()),
    )
    now_ms = int(time.time() * 1000)
    rows = [
        {"key": f"jti:{row.jti}", "revoked_at_ms": now_ms, "expires_at": row.expires_at}
        for row in connection.execute(sa.select(old.c.jti, old.c.expires_at))
    ]
    if rows:
        op.bulk_insert(revocations, rows)

    with op.batch_alter_table("revoked_access_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revoked_access_tokens_expires_at"))
    op.drop_table("revoked_access_tokens")

    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refresh_reuse_grace", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("refresh_reuse_grace")
    op.create_table(
        "revoked_access_tokens",
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_access_tokens")),
    )
    with op.batch_alter_table("revoked_access_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_revoked_access_tokens_expires_at"), ["expires_at"], unique=False
        )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocations_expires_at"))
    op.drop_table("revocations")
