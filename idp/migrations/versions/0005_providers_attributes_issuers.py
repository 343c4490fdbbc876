"""users from other providers (jwt-bearer issuers), profile fields, user attributes,
and the trusted issuers themselves

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ALIVE = sa.text("deleted_at IS NULL")
_LINKED_AND_ALIVE = sa.text("deleted_at IS NULL AND subject IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("last_name", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("provider", sa.String(length=2000), server_default="local", nullable=False)
        )
        batch_op.add_column(sa.Column("subject", sa.String(length=255), nullable=True))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_users_tenant_username_key", sqlite_where=_ALIVE, postgresql_where=_ALIVE
        )
        batch_op.create_index(
            "uq_users_tenant_provider_username_key",
            ["tenant_id", "provider", "username_key"],
            unique=True,
            sqlite_where=_ALIVE,
            postgresql_where=_ALIVE,
        )
        batch_op.create_index(
            "uq_users_tenant_provider_subject",
            ["tenant_id", "provider", "subject"],
            unique=True,
            sqlite_where=_LINKED_AND_ALIVE,
            postgresql_where=_LINKED_AND_ALIVE,
        )
    op.create_table(
        "user_attributes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=1024), nullable=False),
        sa.Column("is_personal", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_attributes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_attributes")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_user_attributes_user_id")),
    )
    op.create_table(
        "trusted_issuers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=2000), nullable=False),
        sa.Column("jwks", sa.JSON(), nullable=True),
        sa.Column("jwks_uri", sa.String(length=2000), nullable=True),
        sa.Column("provision", sa.Boolean(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_trusted_issuers_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trusted_issuers")),
        sa.UniqueConstraint("tenant_id", "issuer", name=op.f("uq_trusted_issuers_tenant_id")),
    )


def downgrade() -> None:
    op.drop_table("trusted_issuers")
    op.drop_table("user_attributes")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_users_tenant_provider_subject",
            sqlite_where=_LINKED_AND_ALIVE,
            postgresql_where=_LINKED_AND_ALIVE,
        )
        batch_op.drop_index(
            "uq_users_tenant_provider_username_key",
            sqlite_where=_ALIVE,
            postgresql_where=_ALIVE,
        )
        batch_op.create_index(
            "uq_users_tenant_username_key",
            ["tenant_id", "username_key"],
            unique=True,
            sqlite_where=_ALIVE,
            postgresql_where=_ALIVE,
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("subject")
        batch_op.drop_column("provider")
        batch_op.drop_column("last_name")
        batch_op.drop_column("first_name")
