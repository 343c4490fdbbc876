"""Database implementations for the embedded profile: a primary key makes claims atomic."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
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


class DatabaseReplayStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, key: str, expires_at: int) -> bool:
        # Its own short transaction: the claim must be durable even if the request later fails.
        try:
            with self.engine.begin() as connection:
                stale = ReplayEntry.expires_at < _now()
                if random.random() >= SWEEP_PROBABILITY:  # noqa: S311 -- not security relevant
                    # A jti may be reused once its record expired (RFC 7523 §3, item 7).
                    stale = stale & (ReplayEntry.key == key)
                connection.execute(delete(ReplayEntry).where(stale))
                connection.execute(
                    insert(ReplayEntry).values(key=key, expires_at=_moment(expires_at))
                )
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database: {type(exc).__name__}") from exc
        return True


class DatabaseRevocationList:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def revoke(self, jti: str, expires_at: int) -> None:
        try:
            with self.engine.begin() as connection:
                if random.random() < SWEEP_PROBABILITY:  # noqa: S311 -- not security relevant
                    connection.execute(
                        delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < _now())
                    )
                connection.execute(
                    insert(RevokedAccessToken).values(jti=jti, expires_at=_moment(expires_at))
                )
        except IntegrityError:
            return  # already revoked
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database: {type(exc).__name__}") from exc

    def is_revoked(self, jti: str) -> bool:
        try:
            with self.engine.connect() as connection:
                found = connection.scalar(
                    select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == jti)
                )
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database: {type(exc).__name__}") from exc
        return found is not None
