"""App fixtures for both storage profiles.

The profile (``--profile embedded|production``) picks SQLite + database stores or
PostgreSQL + Redis started by pytest-postgresql / pytest-redis. One database per
session is migrated once through Alembic (as ``idp init`` does); each test starts
from empty tables, a flushed Redis and a fresh key store of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.app import MIGRATIONS_DIR, create_app
from idp.models import DEFAULT_TENANT, Tenant, db
from idp.runtime import runtime
from idp.settings import load_settings

pytest_plugins = ["tests.plugins.servers"]

ISSUER = "http://127.0.0.1:8000"


@pytest.fixture(scope="session")
def database_url(profile: str, request: pytest.FixtureRequest, tmp_path_factory: Any) -> str:
    if profile == "production":
        server = request.getfixturevalue("postgres_server")
        server.create_database("idp_test")
        url = server.url("idp_test")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'idp.sqlite3'}"
    migrate_database(url, tmp_path_factory.mktemp("migrate-keys"))
    return url


def migrate_database(url: str, keys_dir: Path) -> None:
    """Bring a database to the migration head, as ``idp init`` does."""
    from flask_migrate import upgrade

    app = create_app(load_settings({"IDP_DATABASE_URL": url, "IDP_KEYS_DIR": str(keys_dir)}))
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        db.engine.dispose()


@pytest.fixture(scope="session")
def redis_url(profile: str, request: pytest.FixtureRequest) -> str | None:
    if profile != "production":
        return None
    return request.getfixturevalue("redis_server").url(0)


@pytest.fixture
def idp_env(database_url: str, redis_url: str | None, tmp_path: Path) -> dict[str, str]:
    """The IDP_* environment of one test: the profile's stores and a private key folder."""
    env = {
        "IDP_ISSUER": ISSUER,
        "IDP_DATABASE_URL": database_url,
        "IDP_KEYS_DIR": str(tmp_path / "keys"),
    }
    if redis_url:
        env["IDP_REDIS_URL"] = redis_url
    return env


def _empty_database() -> None:
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()


@pytest.fixture
def make_app(idp_env: dict[str, str]) -> Iterator[Any]:
    """Build an initialised app (default tenant, active + next key) from extra env values."""
    apps: list[Flask] = []

    def build(**overrides: str) -> Flask:
        app = create_app(load_settings(idp_env | overrides))
        app.config["TESTING"] = True
        with app.app_context():
            rt = runtime(app)
            if not apps:
                _empty_database()
                if rt.redis is not None:
                    rt.redis.flushdb()
            if db.session.query(Tenant).filter_by(name=DEFAULT_TENANT).first() is None:
                db.session.add(Tenant(name=DEFAULT_TENANT))
                db.session.commit()
            rt.key_store.initialise(rt.settings.signing_alg)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
            if runtime(app).redis is not None:
                runtime(app).redis.close()


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app()


@pytest.fixture
def http(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    command: list[str],
    idp_env: dict[str, str],
    cwd: Path,
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> CliResult:
    """Run an ``idp`` entry point in a subprocess with only the test's IDP_* settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    full_env |= idp_env | (env or {})
    done = subprocess.run(
        [*command, *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def run_idp(idp_env: dict[str, str], tmp_path: Path) -> Any:
    """Run the real ``idp`` console entry in a subprocess, as an operator would."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> CliResult:
        command = [sys.executable, "-m", "idp"]
        return run_cli(command, idp_env, tmp_path, *args, input=input, env=env)

    return run
