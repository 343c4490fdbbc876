"""Policy about users that the token grants apply: which scopes a user may be granted,
and whether a login's session may go on."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from idp.models import User
from idp.registry import USER_BASE_SCOPES
from idp.users import lockout


def grantable_scopes(client_scopes: Iterable[str], user: User) -> list[str]:
    """The client's scopes that the user holds, counting the base scopes every user has."""
    user_side = set(user.scopes) | set(USER_BASE_SCOPES)
    return [scope for scope in client_scopes if scope in user_side]


def session_may_continue(user: User | None, auth_time: datetime) -> bool:
    """May a session begun at ``auth_time`` go on? A bad-password lock leaves sessions
    alone; an operator's lock, a deletion or a later password change ends them."""
    if user is None or user.deleted_at is not None or lockout.is_locked_by_operator(user):
        return False
    return user.password_changed_at is None or user.password_changed_at <= auth_time
