"""clients: resources, DPoP and mutual-TLS binding, profile; refresh families: binding, resources

A client may be registered with the resources it may ask tokens for (RFC 8707), with
DPoP-bound access tokens (RFC 9449), with a mutual-TLS identity and certificate-bound
tokens (RFC 8705), and with the FAPI 2.0 profile. A login remembers the DPoP key it was
bound to and the resources it was granted, which its refreshes may narrow, never widen.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CLIENT_COLUMNS = (
    "resources",
    "dpop_bound",
    "profile",
    "tls_subject_dn",
    "tls_san",
    "tls_bound_tokens",
)


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(
            sa.Column("resources", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(
            sa.Column("dpop_bound", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("profile", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("tls_subject_dn", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("tls_san", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("tls_bound_tokens", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("refresh_tokens") as batch_op:
        batch_op.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("resources", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch_op:
        batch_op.drop_column("resources")
        batch_op.drop_column("dpop_jkt")
    with op.batch_alter_table("clients") as batch_op:
        for name in reversed(CLIENT_COLUMNS):
            batch_op.drop_column(name)
