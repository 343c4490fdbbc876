"""Database implementations for the embedded profile: a primary key makes claims atomic."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from sqlalchemy import Executable, delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from idp.models import ReplayEntry, RevokedAccessToken
from idp.stores.base import StoreUnavailable

# Expired rows are swept on a small share of writes, so the tables stay bounded.
SWEEP_PROBABILITY = 0.02


def _moment(unix_time: int) -> datetime:
    return datetime.fromtimestamp(unix_time, UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _sweep_now() -> bool:
    return random.random() < SWEEP_PROBABILITY  # noqa: S311 -- not security relevant


def _insert_once(engine: Engine, *statements: Executable) -> bool:
    """Run the statements in their own transaction; False if the final insert hit the key.

    Its own short transaction: a claim must be durable even if the request later fails.
    """
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(statement)
    except IntegrityError:
        return False
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"database: {type(exc).__name__}") from exc
    return True


class DatabaseReplayStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, key: str, expires_at: int) -> bool:
        stale = ReplayEntry.expires_at < _now()
        if not _sweep_now():
            # A jti may be reused once its record expired (RFC 7523 §3, item 7).
            stale = stale & (ReplayEntry.key == key)
        return _insert_once(
            self.engine,
            delete(ReplayEntry).where(stale),
            insert(ReplayEntry).values(key=key, expires_at=_moment(expires_at)),
        )


class DatabaseRevocationList:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def revoke(self, jti: str, expires_at: int) -> None:
        sweep = [delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < _now())]
        # An IntegrityError means the jti is already on the list: nothing more to do.
        _insert_once(
            self.engine,
            *(sweep if _sweep_now() else []),
            insert(RevokedAccessToken).values(jti=jti, expires_at=_moment(expires_at)),
        )

    def is_revoked(self, jti: str) -> bool:
        try:
            with self.engine.connect() as connection:
                found = connection.scalar(
                    select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == jti)
                )
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database: {type(exc).__name__}") from exc
        return found is not None
