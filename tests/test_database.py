"""idp.database: the served app waits for its database at most IDP_DATABASE_TIMEOUT
seconds; CLI commands (migrations, purge) as long as their work takes.

What a client sees of it, a 503 within the bound from a frozen PostgreSQL or behind a
held SQLite lock, is in tests/observability/test_outage.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from idp.app import create_app
from idp.models import db
from idp.settings import load_settings
from idp.web.errors import is_unavailable


def _sqlite_busy_ms(tmp_path: Path, web: bool, **env: str) -> int:
    settings = load_settings(
        {"IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'busy.sqlite3'}"}
        | {"IDP_KEYS_DIR": str(tmp_path / "keys")}
        | env
    )
    app = create_app(settings, web=web)
    with app.app_context():
        try:
            return int(db.session.execute(text("PRAGMA busy_timeout")).scalar_one())
        finally:
            db.session.remove()
            db.engine.dispose()


def test_sqlite_waits_for_another_writer_at_most_the_timeout(tmp_path: Path) -> None:
    assert _sqlite_busy_ms(tmp_path, web=True) == 2000  # the default
    assert _sqlite_busy_ms(tmp_path, web=True, IDP_DATABASE_TIMEOUT="5") == 5000
    # A CLI command waits out a request's write rather than fail.
    assert _sqlite_busy_ms(tmp_path, web=False, IDP_DATABASE_TIMEOUT="5") == 30000


def _sleep(seconds: float) -> int:
    query = text("SELECT 1 FROM pg_sleep(:seconds)")
    return int(db.session.execute(query, {"seconds": seconds}).scalar_one())


@pytest.mark.production_only  # a PostgreSQL statement; SQLite's wait is the lock above
def test_a_postgresql_answer_is_awaited_at_most_the_timeout(make_app) -> None:
    app = make_app(IDP_DATABASE_TIMEOUT="1")
    with app.app_context():
        assert _sleep(0.3) == 1  # an answer within the bound is read

        started = time.monotonic()
        with pytest.raises(OperationalError) as caught:
            _sleep(5)
        assert time.monotonic() - started < 1.5
        assert caught.value.connection_invalidated  # never handed out again
        assert is_unavailable(caught.value)  # a 503, not a 500
        db.session.rollback()

        assert _sleep(0) == 1  # the next statement gets a fresh connection


@pytest.mark.production_only
def test_cli_statements_take_as_long_as_they_need(idp_env) -> None:
    settings = load_settings(idp_env | {"IDP_DATABASE_TIMEOUT": "1"})
    app = create_app(settings, web=False)
    with app.app_context():
        try:
            assert _sleep(1.5) == 1
        finally:
            db.session.remove()
            db.engine.dispose()
