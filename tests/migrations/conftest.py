"""A database of its own per test, to be taken through the migrations step by step."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from idp.app import MIGRATIONS_DIR, create_app, init_migrations
from idp.models import db
from idp.settings import load_settings


@pytest.fixture
def blank_database(profile: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of the run's profile."""
    if profile != "production":
        yield f"sqlite:///{tmp_path / 'blank.sqlite3'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"blank_{uuid.uuid4().hex[:12]}"
    url = server.create_database(name)
    yield url
    server.drop_database(name)


class Migrator:
    """Takes one database up or down the migrations, as ``idp init`` and Alembic do."""

    def __init__(self, url: str, keys_dir: Path) -> None:
        settings = {"IDP_DATABASE_URL": url, "IDP_KEYS_DIR": str(keys_dir)}
        self.app = create_app(load_settings(settings), web=False)
        init_migrations(self.app)

    def up(self, revision: str) -> None:
        from flask_migrate import upgrade

        with self.app.app_context():
            upgrade(directory=str(MIGRATIONS_DIR), revision=revision)
            db.engine.dispose()

    def down(self, revision: str) -> None:
        from flask_migrate import downgrade

        with self.app.app_context():
            downgrade(directory=str(MIGRATIONS_DIR), revision=revision)
            db.engine.dispose()


@pytest.fixture
def migrator(blank_database: str, tmp_path: Path) -> Migrator:
    return Migrator(blank_database, tmp_path / "keys")


@pytest.fixture
def sql(blank_database: str) -> Iterator[Callable[..., Any]]:
    """``sql(statement, **params)``: run one statement in its own committed transaction and
    return its rows (an empty list for a statement that returns none)."""
    engine = sa.create_engine(blank_database)

    def run(statement: str, **params: Any) -> list[Any]:
        with engine.begin() as connection:
            result = connection.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []

    yield run
    engine.dispose()
