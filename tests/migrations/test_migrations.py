"""The migration head must describe exactly the schema the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import Migrate

from idp.app import MIGRATIONS_DIR
from idp.models import db


def test_database_is_at_the_single_migration_head(app: Flask) -> None:
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config(str(MIGRATIONS_DIR))
        heads = ScriptDirectory.from_config(config).get_heads()
        assert len(heads) == 1
        with db.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
        assert tuple(current) == tuple(heads)


def test_models_and_migrations_agree(app: Flask) -> None:
    assert isinstance(app.extensions["migrate"].migrate, Migrate)
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []
