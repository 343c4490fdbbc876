"""Client registrations for the token hot path, read from a per-worker cache.

Reading the client row on every token request was the largest cost of the endpoint. A
worker keeps immutable copies instead and checks the clients' registry version (one
indexed read) at most every ``CHECK_INTERVAL`` seconds: the transaction that changes
or deletes a client bumps that version, so within that interval every worker of every
instance drops its copies and a deleted client or a rotated secret stops working.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from idp.models import Client, ClientRegistration, RegistryVersion, Tenant
from idp.stores.base import SessionLike

CLIENTS = "clients"
CHECK_INTERVAL = 0.5  # seconds; a change is seen within this (plus one request)
MAX_ENTRIES = 10_000  # bounds memory; a full cache starts over


class ClientRegistry:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.clock = clock
        self._lock = threading.Lock()
        self._checking = threading.Lock()
        self._entries: dict[str, ClientRegistration] = {}
        self._version: int | None = None
        self._checked_at = float("-inf")

    def get(self, client_id: str) -> ClientRegistration | None:
        self._drop_if_changed()
        cached = self._entries.get(client_id)
        if cached is not None:
            return cached
        # Unknown ids are not remembered: a flood of them must not fill the memory.
        registration = self._load(client_id)
        if registration is not None:
            with self._lock:
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[client_id] = registration
        return registration

    def _drop_if_changed(self) -> None:
        now = self.clock()
        if now - self._checked_at < CHECK_INTERVAL:
            return
        # One request of this worker checks; the others in flight wait for its answer
        # instead of all querying the version at once. None of them uses copies older
        # than the interval unchecked: when the check fails (the database is down), each
        # request fails in turn rather than authenticating a client that may be gone.
        with self._checking:
            if self.clock() - self._checked_at < CHECK_INTERVAL:
                return  # checked while this request waited
            with self.engine.connect() as connection:
                version = connection.scalar(
                    select(RegistryVersion.version).where(RegistryVersion.name == CLIENTS)
                )
            with self._lock:
                if version != self._version:
                    self._entries.clear()
                    self._version = version
                self._checked_at = now

    def _load(self, client_id: str) -> ClientRegistration | None:
        with Session(self.engine) as session:
            found = session.execute(
                select(Client, Tenant.name).join(Tenant).where(Client.id == client_id)
            ).first()
            if found is None:
                return None
            return ClientRegistration.of(found[0], found[1])


def bump_clients_version(session: SessionLike) -> None:
    """Called in the transaction that changes or deletes a client."""
    bump_registry_version(session, CLIENTS)


def bump_registry_version(session: SessionLike, name: str) -> None:
    """Bump the version of registry ``name`` in the caller's transaction. The row stays
    locked until that transaction ends, so it also serialises the registry's writers."""
    changed = session.execute(
        update(RegistryVersion)
        .where(RegistryVersion.name == name)
        .values(version=RegistryVersion.version + 1)
    )
    if getattr(changed, "rowcount", 1):
        return
    # The row is missing (an emptied table): create it, racing writers agreeing.
    dialect = session.get_bind().dialect.name
    insert_into = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert_into(RegistryVersion).values(name=name, version=1)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[RegistryVersion.name],
            set_={"version": RegistryVersion.version + 1},
        )
    )
