"""Password sign-in: the same work and the same answer for every kind of failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import select

from idp import audit
from idp.models import LOCAL_PROVIDER, User, db, utcnow
from idp.settings import Settings
from idp.users import lockout
from idp.users.passwords import hash_password, needs_rehash
from idp.users.policy import password_refusal
from idp.users.usernames import InvalidUsername, username_key


@dataclass(frozen=True)
class SignInFailure(Exception):
    reason: str  # for audit and metrics only; never shown to the caller


def sign_in(
    tenant_id: int,
    tenant_name: str,
    client_id: str,
    username: str,
    password: str,
    settings: Settings,
) -> User:
    """Return the user, or raise SignInFailure with the failure recorded in the session:
    the caller commits it even though the request fails, so no attempt goes uncounted."""
    now = utcnow()
    user = _find(tenant_id, username)
    context = {"tenant": tenant_name, "client_id": client_id}
    reason = password_refusal(user, password, settings, now, context)
    if user is None:
        _fail("login_failure", reason or "unknown_user", context)
    if reason is not None:
        _fail("login_failure", reason, context | {"user_id": user.id})
    stored_hash = user.password_hash
    lockout.record_success(user.id, now)  # an ORM UPDATE: also refreshes ``user`` in memory
    if stored_hash is not None and needs_rehash(stored_hash):
        user.password_hash = hash_password(password)
    audit.record("login_success", user_id=user.id, **context)
    return user


def _find(tenant_id: int, username: str) -> User | None:
    """The live user whose username compares equal (RFC 8265) to ``username``.

    A name no user can have is simply unknown: it still runs the same query, with
    the empty key (never stored: PRECIS refuses an empty name), and then takes the
    unknown-user path, so neither the answer nor the time sets it apart.
    """
    try:
        key = username_key(username)
    except InvalidUsername:
        key = ""
    return db.session.scalar(
        select(User).where(
            User.tenant_id == tenant_id,
            User.provider == LOCAL_PROVIDER,  # users of an issuer have no password here
            User.username_key == key,
            User.deleted_at.is_(None),
        )
    )


def _fail(event: str, reason: str, context: dict[str, Any]) -> NoReturn:
    audit.record(event, reason=reason, **context)
    raise SignInFailure(reason)
