"""user attributes: a name is unique among the user's attributes of one kind

A personal attribute and a non-personal one of the same user may share a name, so that
the management routes, which never see personal attributes, cannot learn their names
from a refused duplicate.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

PER_USER = "uq_user_attributes_user_id"
PER_KIND = "uq_user_attributes_user_id_is_personal_name"
_SHARED_NAMES = (
    "SELECT user_id, name FROM user_attributes GROUP BY user_id, name HAVING count(*) > 1"
)


def upgrade() -> None:
    # SQLite cannot drop a constraint: batch mode copies the table (it has no triggers).
    with op.batch_alter_table("user_attributes") as batch_op:
        batch_op.drop_constraint(PER_USER, type_="unique")
        batch_op.create_unique_constraint(PER_KIND, ["user_id", "is_personal", "name"])


def downgrade() -> None:
    # The older rule keeps a name once per user. Which of two attributes of that name to
    # drop is the operator's choice, not the migration's: nothing is deleted here.
    shared = op.get_bind().execute(sa.text(_SHARED_NAMES)).first()
    if shared is not None:
        raise RuntimeError(
            "cannot downgrade: a user holds a personal and a non-personal attribute of the"
            f" same name (user {shared.user_id}, name {shared.name!r}); remove one of each"
            " such pair first"
        )
    with op.batch_alter_table("user_attributes") as batch_op:
        batch_op.drop_constraint(PER_KIND, type_="unique")
        batch_op.create_unique_constraint(PER_USER, ["user_id", "name"])
