"""The rules every surface applies to a principal, each written once here: which scopes it
may get, whether a user may sign in or keep a session, and whether a password is right
(counting toward the lockout).

The grants, userinfo, the token lookup of introspection, the users API and the CLI call
these functions; none of them keeps a copy of a rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, TypeGuard

from idp import audit
from idp.errors import IdpError
from idp.models import User
from idp.registry import USER_BASE_SCOPES
from idp.settings import Settings
from idp.users import lockout
from idp.users.passwords import hash_password, verify_password

# -- scopes (RFC 6749 §3.3) ---------------------------------------------------------------


class ScopesNotHeld(IdpError):
    """Scopes the acting principal tried to give a user without holding them itself."""

    def __init__(self, scopes: list[str]) -> None:
        super().__init__(f"cannot grant scopes the caller does not hold: {' '.join(scopes)}")
        self.scopes = scopes


def grantable_scopes(
    client_scopes: Iterable[str], user: User | None = None, cap: Iterable[str] | None = None
) -> list[str]:
    """What a token may carry, in the client's order: the client's scopes, within ``cap``
    when one applies (a trusted issuer's), and, for a user's token, within the user's
    scopes plus the base scopes every user has."""
    allowed = list(client_scopes)
    if cap is not None:
        capped = set(cap)
        allowed = [scope for scope in allowed if scope in capped]
    if user is not None:
        user_side = set(user.scopes) | set(USER_BASE_SCOPES)
        allowed = [scope for scope in allowed if scope in user_side]
    return allowed


def scopes_beyond(wanted: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The scopes of ``wanted`` that ``allowed`` does not hold, in order."""
    held = set(allowed)
    return [scope for scope in dict.fromkeys(wanted) if scope not in held]


def narrow_scope(allowed: Sequence[str], requested: str | None) -> str | None:
    """The scope a new token gets: all of ``requested`` when it lies within ``allowed``
    (duplicates dropped), every allowed scope when none is requested, and None when any
    requested scope is beyond ``allowed``, which the caller refuses (``invalid_scope``)
    rather than dropping it silently."""
    if requested is None or not requested.strip():
        return " ".join(allowed)
    wanted = list(dict.fromkeys(requested.split()))
    return None if scopes_beyond(wanted, allowed) else " ".join(wanted)


def retained_scope(requested: str, allowed: Iterable[str]) -> str:
    """A refreshed token's scope: what is asked of the session, less what the user or
    the client no longer holds. Unlike a new token's, it narrows without refusing."""
    held = set(allowed)
    return " ".join(scope for scope in dict.fromkeys(requested.split()) if scope in held)


def check_scope_ceiling(scopes: Iterable[str], held: Iterable[str]) -> None:
    """No one hands out more than they hold: ``scopes`` must lie within ``held`` plus the
    base scopes every signed-in user has anyway."""
    beyond = scopes_beyond(scopes, [*held, *USER_BASE_SCOPES])
    if beyond:
        raise ScopesNotHeld(beyond)


# -- users ------------------------------------------------------------------------------


def is_live(user: User | None) -> TypeGuard[User]:
    """The user exists and is not deleted."""
    return user is not None and user.deleted_at is None


def may_sign_in(user: User | None, now: datetime) -> bool:
    """May the user begin a login now, by any grant? Any lock refuses it: an operator's,
    or one from bad passwords."""
    return is_live(user) and not lockout.is_locked(user, now)


def session_may_continue(user: User | None, auth_time: datetime) -> bool:
    """May a login begun at ``auth_time`` go on (a refresh, a token's introspection)? A
    bad-password lock leaves sessions alone; an operator's lock, a deletion or a later
    password change ends them."""
    if not is_live(user) or lockout.is_locked_by_operator(user):
        return False
    return user.password_changed_at is None or user.password_changed_at <= auth_time


# -- passwords --------------------------------------------------------------------------


@cache
def _timing_hash() -> str:
    """A hash verified when there is no user or no password, so that such a check costs
    what a real one does. Made on first use, not at import."""
    return hash_password("idp-dummy-password-for-timing")


def password_refusal(
    user: User | None, password: str, settings: Settings, now: datetime, context: dict[str, Any]
) -> str | None:
    """Why ``password`` does not prove ``user`` (``unknown_user``, ``locked`` or
    ``bad_password``), or None when it does.

    Every case verifies a hash, so none answers faster than another. A locked user's
    attempt is refused without counting, so the lock is no guessing channel; a wrong
    password is counted in one UPDATE, and the attempt that reaches the threshold audits
    ``user_locked`` with ``context``. The caller records its own event and commits the
    count even though its request fails.
    """
    stored = user.password_hash if user is not None else None
    # With no stored hash the timing hash is verified, and its answer never counts.
    matches = verify_password(stored or _timing_hash(), password) and bool(stored)
    if not is_live(user):
        return "unknown_user"
    if not may_sign_in(user, now):
        return "locked"
    if not matches:
        if lockout.record_failure(user.id, settings, now) == settings.lockout_threshold:
            audit.record("user_locked", user_id=user.id, reason="bad_passwords", **context)
        return "bad_password"
    return None
