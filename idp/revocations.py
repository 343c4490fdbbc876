"""What kills an access token before its ``exp``, recorded in the revocation store.

Access tokens are self-contained JWTs, so a revocation is a record that idp's own
endpoints, introspection and ``idp.verify`` consult: a revoked ``jti``, a revoked login
session (``sid``, the refresh-token family), or a user or client whose tokens issued up
to a moment are all dead. Each record is kept until every token it can match has
expired: a jti until its own ``exp``; the others for the longest access-token lifetime.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select

from idp.models import Client, db
from idp.runtime import runtime
from idp.stores import Revocation


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def longest_access_token_ttl() -> int:
    """The longest lifetime any access token can have now (settings or a client override)."""
    settings = runtime().settings
    longest_client = db.session.scalar(select(func.max(Client.access_token_ttl))) or 0
    return max(settings.access_token_ttl, longest_client)


def revoke_access_token(jti: str, expires_at: int) -> None:
    _record(f"jti:{jti}", expires_at + runtime().settings.clock_skew)


def revoke_session(family_id: str) -> None:
    """Every access token of one login (password grant and the refreshes that followed)."""
    _record(f"sid:{family_id}")


def revoke_user_tokens(user_id: str) -> None:
    """Every access token issued for the user so far; later logins are not affected."""
    _record(f"user:{user_id}")


def revoke_client_tokens(client_id: str) -> None:
    """Every access token the client was issued, its own and its users'."""
    _record(f"client:{client_id}")


def _record(key: str, expires_at: int | None = None) -> None:
    if expires_at is None:
        window = longest_access_token_ttl() + runtime().settings.clock_skew
        expires_at = int(time.time()) + window
    revocation = Revocation(key=key, revoked_at_ms=now_ms(), expires_at=expires_at)
    runtime().revocation_store.revoke(db.session, [revocation])
