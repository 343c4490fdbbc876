from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session, scoped_session

# A session, or Flask-SQLAlchemy's scoped ``db.session`` that stands for one.
SessionLike = Session | scoped_session[Any]


class StoreUnavailable(Exception):
    """The store could not be reached; callers fail closed."""


class PendingClaim(Protocol):
    """A claim sent but perhaps not yet answered: its owner calls exactly one of these."""

    def result(self) -> bool:
        """The claim's answer (waiting for it if need be); raises StoreUnavailable."""
        ...

    def discard(self) -> None:
        """Give up on the answer (the request failed before it needed it)."""
        ...


class SettledClaim:
    """A pending claim whose answer is already known."""

    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh

    def result(self) -> bool:
        return self.fresh

    def discard(self) -> None:
        pass


class ReplayStore(Protocol):
    # The service the store cannot work without, as readiness names it: "database", "redis".
    backend: str

    def claim(self, key: str, expires_at: int) -> bool:
        """Record ``key`` until the Unix time ``expires_at``; False if it was already there."""
        ...

    def begin_claim(self, key: str, expires_at: int) -> PendingClaim:
        """``claim``, started now and answered by the result's ``result()``: a store with
        a network round trip lets the caller do other work while the answer travels."""
        ...

    def ping(self) -> None:
        """Return if the backend answers; raise StoreUnavailable otherwise."""
        ...


@dataclass(frozen=True)
class Revocation:
    """Tokens matching ``key`` and issued at or before ``revoked_at_ms`` are dead
    until the Unix time ``expires_at``, after which none of them can still be unexpired."""

    key: str
    revoked_at_ms: int
    expires_at: int


class RevocationStore(Protocol):
    backend: str

    def revoke(self, session: SessionLike, revocations: Sequence[Revocation]) -> None:
        """Record revocations durably within ``session``'s transaction (the caller commits).

        A fast path outside the database is updated at once, before that commit: should
        the commit fail, a token is refused that could have lived, never the reverse.
        """
        ...

    def latest_revocation(self, keys: Sequence[str]) -> int | None:
        """The newest ``revoked_at_ms`` among live revocations of ``keys``, or None."""
        ...

    def ping(self) -> None:
        """Return if the backend read on every request answers; raise StoreUnavailable
        otherwise."""
        ...
