"""A version counter per registry (clients), for the workers' registration caches.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    versions = op.create_table(
        "registry_versions",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_registry_versions")),
    )
    op.bulk_insert(versions, [{"name": "clients", "version": 0}])


def downgrade() -> None:
    op.drop_table("registry_versions")
