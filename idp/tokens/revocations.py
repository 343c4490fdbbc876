"""What kills an access token before its ``exp``, recorded in the revocation store.

Access tokens are self-contained JWTs, so a revocation is a record that idp's own
endpoints, introspection and ``idp.verify`` consult: a revoked ``jti``, a revoked login
session (``sid``, the refresh-token family), or a user or client whose tokens issued up
to a moment are all dead. Each record is kept until every token it can match has
expired: a jti until its own ``exp``; the others for the longest access-token lifetime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from idp.stores import Revocation, RevocationStore
from idp.stores.base import SessionLike
from idp.tokens.lifetimes import Lifetimes


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Revoker:
    """Records revocations in the caller's session; the caller's commit makes them durable."""

    store: RevocationStore
    lifetimes: Lifetimes

    def access_token(self, session: SessionLike, jti: str, expires_at: int) -> None:
        self._record(session, f"jti:{jti}", expires_at + self.lifetimes.settings.clock_skew)

    def session(self, session: SessionLike, family_id: str) -> None:
        """Every access token of one login (password grant and the refreshes that followed)."""
        self._record(session, f"sid:{family_id}")

    def user_tokens(self, session: SessionLike, user_id: str) -> None:
        """Every access token issued for the user so far; later logins are not affected."""
        self._record(session, f"user:{user_id}")

    def client_tokens(self, session: SessionLike, client_id: str) -> None:
        """Every access token the client was issued, its own and its users'."""
        self._record(session, f"client:{client_id}")

    def _record(self, session: SessionLike, key: str, expires_at: int | None = None) -> None:
        if expires_at is None:
            expires_at = int(time.time()) + self.lifetimes.outlived_by_every_token(session)
        revocation = Revocation(key=key, revoked_at_ms=now_ms(), expires_at=expires_at)
        self.store.revoke(session, [revocation])
