"""The database key store: every instance sees the same keys through PostgreSQL.

A change runs in one transaction that first bumps the ``keys`` row of
``registry_versions``: on PostgreSQL that row lock serialises concurrent operators
(across machines, where ``flock`` on a shared volume is not dependable), on SQLite the
update takes the database's write lock. The same bump is what workers compare to
notice a change, with one indexed read a second.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from idp.errors import KeyStoreError
from idp.keys.generate import generate_signing_key
from idp.keys.sealing import KeySealer
from idp.keys.store import (
    BaseKeyStore,
    Change,
    KeyRecord,
    KeyState,
    _now,
    check_invariants,
)
from idp.models import KEYS_REGISTRY, RegistryVersion, SigningKey
from idp.registrations.cache import bump_registry_version


def _record(row: SigningKey) -> KeyRecord:
    state: KeyState = row.state  # type: ignore[assignment]  # the CHECK constraint holds it
    return KeyRecord(
        kid=row.kid,
        alg=row.alg,
        state=state,
        created_at=row.created_at,
        activated_at=row.activated_at,
        retired_at=row.retired_at,
    )


class DatabaseKeyStore(BaseKeyStore):
    def __init__(self, engine: Engine, sealer: KeySealer) -> None:
        self.engine = engine
        self.sealer = sealer

    @property
    def location(self) -> str:
        return "database (table signing_keys)"

    # -- reading ----------------------------------------------------------------

    def _rows(self, session: Session) -> list[SigningKey]:
        ordered = select(SigningKey).order_by(SigningKey.created_at, SigningKey.kid)
        return list(session.scalars(ordered))

    def records(self) -> list[KeyRecord]:
        with Session(self.engine) as session:
            return [_record(row) for row in self._rows(session)]

    def private_jwk(self, kid: str) -> dict[str, Any]:
        with Session(self.engine) as session:
            row = session.get(SigningKey, kid)
            if row is None:
                raise KeyStoreError(f"no key {kid} in the database key store")
            return self.sealer.open(row.kid, row.sealed_jwk, row.kek_id)

    def snapshot(self) -> list[tuple[KeyRecord, dict[str, Any]]]:
        with Session(self.engine) as session:
            rows = self._rows(session)
        return [
            (_record(row), self.sealer.open(row.kid, row.sealed_jwk, row.kek_id)) for row in rows
        ]

    def change_marker(self) -> int | None:
        with self.engine.connect() as connection:
            version = connection.scalar(
                select(RegistryVersion.version).where(RegistryVersion.name == KEYS_REGISTRY)
            )
        # A missing row (a database emptied by hand) still offers whatever keys it holds.
        return -1 if version is None else version

    # -- writing ----------------------------------------------------------------

    def import_keys(self, keys: Iterable[tuple[KeyRecord, dict[str, Any]]]) -> list[KeyRecord]:
        """Copy keys (as read from another store) into an empty database store."""
        incoming = list(keys)
        for record, jwk in incoming:
            if jwk.get("kid") != record.kid:
                raise KeyStoreError(f"key {record.kid} holds a JWK with another kid")
        sealed: dict[str, dict[str, Any]] = {record.kid: jwk for record, jwk in incoming}

        def change(records: list[KeyRecord], now: datetime, new_key: Any) -> list[KeyRecord]:
            if records:
                raise KeyStoreError(
                    f"the database key store already holds {len(records)} keys; "
                    "import only into an empty one"
                )
            return [record for record, _ in incoming]

        return self._update(change, sealed)

    def _lock(self, session: Session) -> None:
        bump_registry_version(session, KEYS_REGISTRY)

    def _update(
        self, change: Change, supplied: dict[str, dict[str, Any]] | None = None
    ) -> list[KeyRecord]:
        new_jwks: dict[str, dict[str, Any]] = dict(supplied or {})

        def new_key(alg: str, now: datetime, state: KeyState) -> KeyRecord:
            jwk = generate_signing_key(alg)
            new_jwks[jwk["kid"]] = jwk
            return KeyRecord(kid=jwk["kid"], alg=alg, state=state, created_at=now)

        with Session(self.engine) as session:
            try:
                self._lock(session)  # first statement: nothing read before the lock is held
                rows = {row.kid: row for row in self._rows(session)}
                before = [_record(row) for row in rows.values()]
                after = change(before, _now(), new_key)
                if after is before:
                    session.rollback()  # the version does not move either
                    return after
                check_invariants(after)
                self._write(session, rows, after, new_jwks)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        return after

    def _write(
        self,
        session: Session,
        rows: dict[str, SigningKey],
        after: list[KeyRecord],
        new_jwks: dict[str, dict[str, Any]],
    ) -> None:
        wanted = {record.kid for record in after}
        gone = [kid for kid in rows if kid not in wanted]
        if gone:
            session.execute(delete(SigningKey).where(SigningKey.kid.in_(gone)))
        for record in after:
            row = rows.get(record.kid)
            if row is None:
                jwk = new_jwks.get(record.kid)
                if jwk is None:
                    raise KeyStoreError(f"key {record.kid} has no private key to store")
                row = SigningKey(
                    kid=record.kid,
                    sealed_jwk=self.sealer.seal(record.kid, jwk),
                    kek_id=self.sealer.kek_id,
                )
                session.add(row)
            row.alg = record.alg
            row.state = record.state
            row.created_at = record.created_at
            row.activated_at = record.activated_at
            row.retired_at = record.retired_at
