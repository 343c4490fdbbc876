"""Database implementations: the replay cache of the embedded profile (a primary key makes
claims atomic) and the revocation store every profile writes through."""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, Select, bindparam, case, delete, func, insert, or_, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from idp.models import ReplayEntry
from idp.models import Revocation as RevocationRow
from idp.stores.base import Revocation, SessionLike, SettledClaim, StoreUnavailable

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


def _ping(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"database: {type(exc).__name__}") from exc


class DatabaseReplayStore:
    backend = "database"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> None:
        _ping(self.engine)

    def begin_claim(self, key: str, expires_at: int) -> SettledClaim:
        return SettledClaim(self.claim(key, expires_at))

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


class DatabaseRevocationStore:
    """The source of truth for revocations, and the whole store in the embedded profile."""

    backend = "database"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> None:
        _ping(self.engine)

    def revoke(self, session: SessionLike, revocations: Sequence[Revocation]) -> None:
        if _sweep_now():
            session.execute(delete(RevocationRow).where(RevocationRow.expires_at < _now()))
        for revocation in revocations:
            session.execute(_upsert(session, revocation))

    def latest_revocation(self, keys: Sequence[str]) -> int | None:
        params: dict[str, Any] = {f"key{index}": key for index, key in enumerate(keys)}
        params["now"] = _now()
        try:
            with self.engine.connect() as connection:
                latest = connection.scalar(_latest_statement(len(keys)), params)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database: {type(exc).__name__}") from exc
        return None if latest is None else int(latest)

    def live_revocations(self) -> list[Revocation]:
        """Every unexpired revocation, to refill a fast path that lost its data."""
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(
                        RevocationRow.key, RevocationRow.revoked_at_ms, RevocationRow.expires_at
                    ).where(RevocationRow.expires_at > _now())
                )
                return [
                    Revocation(key, revoked_at_ms, int(expires_at.timestamp()))
                    for key, revoked_at_ms, expires_at in rows
                ]
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database: {type(exc).__name__}") from exc


@functools.cache
def _latest_statement(key_count: int) -> Select[Any]:
    """One cached statement per key count, on every request: an expanding ``IN`` would be
    re-rendered at each execution, about five times the cost of the query itself."""
    matches = [RevocationRow.key == bindparam(f"key{index}") for index in range(key_count)]
    return select(func.max(RevocationRow.revoked_at_ms)).where(
        or_(*matches), RevocationRow.expires_at > bindparam("now")
    )


def _upsert(session: SessionLike, revocation: Revocation) -> Executable:
    """Insert, or keep the later of the two revocation times and expiries."""
    # The dialect modules are imported here, at the first revocation: the engine has
    # loaded its own already, and the other one is start-up time for nothing.
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    dialect = session.get_bind().dialect.name
    insert_into = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert_into(RevocationRow).values(
        key=revocation.key,
        revoked_at_ms=revocation.revoked_at_ms,
        expires_at=_moment(revocation.expires_at),
    )
    newer = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[RevocationRow.key],
        set_={
            "revoked_at_ms": case(
                (newer.revoked_at_ms > RevocationRow.revoked_at_ms, newer.revoked_at_ms),
                else_=RevocationRow.revoked_at_ms,
            ),
            "expires_at": case(
                (newer.expires_at > RevocationRow.expires_at, newer.expires_at),
                else_=RevocationRow.expires_at,
            ),
        },
    )
