"""The application factory: settings, database, key ring, blueprints and error format.

The CLI builds the same app without its web side (``web=False``): no blueprints, OAuth
server or migration machinery, whose imports (Authlib, Alembic) would make every
``idp`` command start slowly; the commands that need one import it when they run.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from flask import Flask, Response
from sqlalchemy import event
from sqlalchemy.engine import Engine

from idp.database import bound_postgres_waits, engine_options
from idp.models import db
from idp.observability.logs import REQUEST_ID_HEADER, configure_logging, request_id
from idp.paths import APP_NAME, project_base_dir
from idp.runtime import EXTENSION_KEY, Runtime, build_runtime
from idp.settings import Settings, load_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None, *, web: bool = True) -> Flask:
    configure_logging()
    app = Flask(APP_NAME)
    settings = (settings or load_settings()).anchored(project_base_dir(app))
    # Requests wait for the database a bounded time; CLI commands as long as their work.
    wait_limit = settings.database_timeout if web else None
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings.database_url, wait_limit),
        MAX_CONTENT_LENGTH=settings.max_body,
        MAX_FORM_MEMORY_SIZE=settings.max_body,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    db.init_app(app)
    with app.app_context():
        engine = db.engine
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _tune_sqlite)
        _keep_sqlite_private(engine)
    elif wait_limit is not None:
        bound_postgres_waits(engine, wait_limit)
    app.extensions[EXTENSION_KEY] = build_runtime(settings, engine)
    if web:
        init_migrations(app)
        _init_web(app)
    return app


def init_migrations(app: Flask) -> None:
    """What ``flask_migrate.upgrade`` needs; the CLI's ``init`` calls it itself."""
    from flask_migrate import Migrate

    Migrate(app, db, directory=str(MIGRATIONS_DIR))


def _init_web(app: Flask) -> None:
    from idp import openapi
    from idp.oauth import discovery, views
    from idp.oauth.server import init_authorization_server
    from idp.observability import health, metrics
    from idp.users import api as users_api
    from idp.users import attributes_api
    from idp.web import errors as http_errors

    rt: Runtime = app.extensions[EXTENSION_KEY]
    init_authorization_server(app, rt)
    app.register_blueprint(discovery.blueprint)
    app.register_blueprint(views.blueprint)
    stores = (rt.replay_store, rt.revocation_store)
    app.register_blueprint(health.create_blueprint(stores, rt.key_ring.has_active_key))
    app.register_blueprint(metrics.create_blueprint(rt.settings.metrics_token))
    app.register_blueprint(users_api.blueprint)
    app.register_blueprint(attributes_api.blueprint)
    app.register_blueprint(openapi.blueprint)
    http_errors.register(app, (users_api.blueprint, attributes_api.blueprint, openapi.blueprint))
    app.after_request(_send_request_id)


def _send_request_id(response: Response) -> Response:
    # After-request functions also run on the responses of error handlers (4xx, 413, 503,
    # 500), so every answer names the id its log lines and audit events carry.
    response.headers[REQUEST_ID_HEADER] = request_id() or ""
    return response


SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def _keep_sqlite_private(engine: Engine) -> None:
    """The database file and its journals are the owner's only: they hold
    password hashes and refresh-token hashes."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    for suffix in SQLITE_SUFFIXES:  # files left by an older idp or another tool
        _make_private(Path(path + suffix))

    def create_private(*_: Any) -> None:
        # Before each DBAPI connect: SQLite would create a missing database with the
        # umask's mode (often 0644), and it gives -wal/-shm/-journal the database's mode.
        # O_EXCL opens nothing when the file exists. Closing any descriptor of an open
        # database drops every POSIX lock this process holds on it (fcntl(2)), including
        # the shared lock of its other SQLite connections; another process closing its
        # last connection then takes itself for the last user, checkpoints and deletes
        # the WAL, and this process goes on committing into the deleted file.
        with contextlib.suppress(OSError):  # it exists, or no folder yet (SQLite says so)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))

    event.listen(engine, "do_connect", create_private)


def _make_private(path: Path) -> None:
    # Only files idp's user owns; one it cannot change is left for SQLite to open or refuse.
    with contextlib.suppress(OSError):
        info = path.stat()
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(0o600)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets gunicorn workers read while one writes; foreign keys are off by default in SQLite.
    # The busy timeout is sqlite3.connect's timeout (idp.database.engine_options).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
