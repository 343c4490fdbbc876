"""User lifecycle operations shared by the CLI and the /users API.

Each operation changes rows and adds its audit event in the caller's session; the
caller commits once, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, func, select, text, tuple_
from sqlalchemy.sql import ColumnElement

from idp import audit
from idp.errors import IdpError
from idp.models import LOCAL_PROVIDER, Tenant, User, db, utcnow
from idp.models.base import new_uuid
from idp.models.users import LOCK_CANDIDATE, UserCount
from idp.registrations.tenants import require_tenant
from idp.scopes import parse_scope
from idp.tokens.refresh_tokens import revoke_user_tokens
from idp.tokens.revocations import Revoker
from idp.users import lockout, paging
from idp.users.passwords import check_policy, hash_password
from idp.users.records import rfc3339
from idp.users.usernames import InvalidUsername, username_key

_USER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Conflict(IdpError):
    pass


def _username_taken(tenant_id: int, key: str, except_id: str | None = None) -> bool:
    """Whether a live local user of the tenant has the username whose comparison form is
    ``key`` (usernames are unique per provider)."""
    query = select(User.id).where(
        User.tenant_id == tenant_id,
        User.provider == LOCAL_PROVIDER,
        User.username_key == key,
        User.deleted_at.is_(None),
    )
    if except_id:
        query = query.where(User.id != except_id)
    return db.session.scalar(query) is not None


def _client_user_id_taken(client_id: str | None, value: str, except_id: str | None = None) -> bool:
    query = select(User.id).where(
        User.client_id == client_id, User.client_user_id == value, User.deleted_at.is_(None)
    )
    if except_id:
        query = query.where(User.id != except_id)
    return db.session.scalar(query) is not None


def new_user(
    tenant: Tenant,
    *,
    username: str | None,
    password: str | None,
    email: str | None,
    scopes: list[str],
    client_id: str | None = None,
    client_user_id: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    actor: audit.Actor | None = None,
) -> User:
    # Raises InvalidUsername before anything is written or looked up.
    key = username_key(username) if username is not None else None
    if key is not None and _username_taken(tenant.id, key):
        raise Conflict(f"user {username!r} already exists in tenant {tenant.name!r}")
    if client_user_id is not None and _client_user_id_taken(client_id, client_user_id):
        raise Conflict(f"clientUserId {client_user_id!r} already exists for this client")
    if password is not None:
        check_policy(password)
    now = utcnow()
    user = User(
        id=new_uuid(),
        tenant=tenant,
        username=username,
        username_key=key,
        email=email,
        first_name=first_name,
        last_name=last_name,
        provider=LOCAL_PROVIDER,
        scopes=scopes,
        client_id=client_id,
        client_user_id=client_user_id,
        managed_by=client_id,
        password_hash=hash_password(password) if password is not None else None,
        password_changed_at=now if password is not None else None,
        created_at=now,
        updated_at=now,
    )
    db.session.add(user)
    audit.record(
        "user_created", tenant=tenant.name, client_id=client_id, user_id=user.id, actor=actor
    )
    return user


def create_user(
    tenant_name: str,
    username: str,
    password: str | None,
    email: str | None,
    scope: str | None,
    *,
    client_user_id: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    actor: audit.Actor | None = None,
) -> User:
    """The operator's path (CLI)."""
    user = new_user(
        require_tenant(tenant_name),
        username=username,
        password=password,
        email=email,
        scopes=parse_scope(scope),
        client_user_id=client_user_id,
        first_name=first_name,
        last_name=last_name,
        actor=actor,
    )
    db.session.flush()
    return user


def _live_user(user_id: str, *conditions: ColumnElement[bool]) -> User | None:
    if not _USER_ID.match(user_id):
        return None
    return db.session.scalar(
        select(User).where(User.id == user_id, User.deleted_at.is_(None), *conditions)
    )


def find_user(tenant_id: int, user_id: str) -> User | None:
    return _live_user(user_id, User.tenant_id == tenant_id)


def find_user_in_any_tenant(user_id: str) -> User | None:
    """The operator's lookup (CLI): a live user by id, whatever its tenant."""
    return _live_user(user_id)


def find_users_by_username(tenant_id: int, username: str, provider: str | None) -> list[User]:
    """Live users of the tenant with this username (compared as sign-in does), of one
    provider or of every one: usernames are unique per provider only."""
    conditions = [User.tenant_id == tenant_id, _username_condition(username)]
    if provider is not None:
        conditions.append(User.provider == provider)
    return list(db.session.scalars(select(User).where(User.deleted_at.is_(None), *conditions)))


def _username_condition(name: str) -> ColumnElement[bool]:
    """Match by comparison form, as sign-in does; a name no user can have matches none."""
    try:
        return User.username_key == username_key(name)
    except InvalidUsername:
        return false()


# Filters that pick a few users out of many: their totals are counted from their index.
_SELECTIVE = ("username", "email", "clientUserId")


@dataclass
class UserPage:
    users: list[User]
    total: int
    # The last row's place when more rows follow it, else None (the last page).
    next_position: paging.Position | None


def _list_conditions(
    tenant_id: int | None, filters: dict[str, Any], now: datetime
) -> list[ColumnElement[bool]]:
    """The WHERE of a list query, each filter written the way its partial index is
    declared (idp.models.users) so the planner can use it."""
    conditions: list[ColumnElement[bool]] = [User.deleted_at.is_(None)]
    if tenant_id is not None:
        conditions.append(User.tenant_id == tenant_id)
    if filters.get("username") is not None:
        conditions.append(_username_condition(filters["username"]))
    for name, column in (
        ("email", User.email),
        ("clientUserId", User.client_user_id),
        ("clientId", User.client_id),
    ):
        if filters.get(name) is not None:
            conditions.append(column == filters[name])
    if filters.get("locked") is not None:
        locked = _locked_now(now)
        if filters["locked"]:
            conditions.extend([and_(text(LOCK_CANDIDATE)), locked])
        else:
            conditions.append(~locked)
    return conditions


def _locked_now(now: datetime) -> ColumnElement[bool]:
    return User.locked | (User.locked_until.is_not(None) & (User.locked_until > now))


def _count(conditions: list[ColumnElement[bool]]) -> int:
    return db.session.scalar(select(func.count()).select_from(User).where(*conditions)) or 0


def _live_count(tenant_id: int, client_id: str | None) -> int:
    """Live users of the tenant (of one managing client), from the counters the
    database keeps: no scan, exact under concurrent writes."""
    query = select(func.coalesce(func.sum(UserCount.live), 0)).where(
        UserCount.tenant_id == tenant_id
    )
    if client_id is not None:
        query = query.where(UserCount.client_id == client_id)
    return int(db.session.scalar(query) or 0)


def _total(
    tenant_id: int | None, filters: dict[str, Any], conditions: list[ColumnElement[bool]]
) -> int:
    client_id = filters.get("clientId")
    # The counters file users without a managing client under "", which no client has.
    if tenant_id is None or any(k in filters for k in _SELECTIVE) or client_id == "":
        return _count(conditions)
    live = _live_count(tenant_id, client_id)
    if filters.get("locked") is None:
        return live
    # Locked users are few, counted from their small index; the unlocked are the rest.
    locked_filters = {**filters, "locked": True}
    locked = _count(_list_conditions(tenant_id, locked_filters, utcnow()))
    return locked if filters["locked"] else live - locked


def list_page(
    tenant_id: int | None,
    filters: dict[str, Any],
    limit: int | None,
    offset: int = 0,
    after: paging.Position | None = None,
) -> UserPage:
    """Live users matching ``filters`` in the list order (created_at, id): from
    ``offset``, or right after the row at ``after`` (keyset paging: a range read of the
    filter's index, as fast at the millionth row as at the first, and stable while
    users are added and deleted). ``tenant_id`` None (the operator's view, CLI) lists
    every tenant, and ``limit`` None every match."""
    conditions = _list_conditions(tenant_id, filters, utcnow())
    total = _total(tenant_id, filters, conditions)
    query = select(User).where(*conditions)
    if after is not None:
        query = query.where(
            tuple_(User.created_at, User.id) > tuple_(after.created_at, after.user_id)
        )
    query = query.order_by(User.created_at, User.id).offset(offset or None)
    if limit is not None:
        # One row beyond the page tells whether another page follows.
        query = query.limit(limit + 1)
    rows = list(db.session.scalars(query))
    next_position = None
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        next_position = paging.Position(rows[-1].created_at, rows[-1].id)
    return UserPage(rows, total, next_position)


def list_users(
    tenant_id: int | None, filters: dict[str, Any], limit: int | None, offset: int
) -> tuple[list[User], int]:
    """Live users matching ``filters`` and their total (see list_page)."""
    page = list_page(tenant_id, filters, limit, offset)
    return page.users, page.total


def update_user(user: User, changes: dict[str, Any], actor: audit.Actor | None) -> User:
    if "clientUserId" in changes and changes["clientUserId"] is not None:
        if _client_user_id_taken(user.client_id, changes["clientUserId"], except_id=user.id):
            raise Conflict(f"clientUserId {changes['clientUserId']!r} already exists")
        user.client_user_id = changes["clientUserId"]
    elif "clientUserId" in changes:
        user.client_user_id = None
    if "email" in changes:
        user.email = changes["email"]
    if "firstName" in changes:
        user.first_name = changes["firstName"]
    if "lastName" in changes:
        user.last_name = changes["lastName"]
    if "scopes" in changes:
        user.scopes = list(dict.fromkeys(changes["scopes"] or []))
    user.updated_at = utcnow()
    audit.record(
        "user_updated",
        tenant=user.tenant.name,
        actor=actor,
        user_id=user.id,
        fields=sorted(changes),
    )
    return user


def delete_user(user: User, actor: audit.Actor | None, revoker: Revoker) -> int:
    user.deleted_at = utcnow()
    user.updated_at = user.deleted_at
    revoked = revoke_user_tokens(user.id)
    revoker.user_tokens(db.session, user.id)
    audit.record(
        "user_deleted", tenant=user.tenant.name, actor=actor, user_id=user.id, revoked=revoked
    )
    return revoked


def set_password(
    user: User, new_password: str, actor: audit.Actor | None, event: str, revoker: Revoker
) -> int:
    """Replace the password and end every session; returns the refresh tokens revoked."""
    check_policy(new_password)
    now = utcnow()
    user.password_hash = hash_password(new_password)
    user.password_changed_at = now
    user.bad_attempts = 0
    user.locked_until = None
    user.updated_at = now
    revoked = revoke_user_tokens(user.id)
    revoker.user_tokens(db.session, user.id)
    audit.record(event, tenant=user.tenant.name, actor=actor, user_id=user.id, revoked=revoked)
    return revoked


def set_lock(user: User, locked: bool, actor: audit.Actor | None, revoker: Revoker) -> None:
    if locked:
        user.locked = True
        # An operator's lock ends live sessions too (a bad-password lock does not).
        revoker.user_tokens(db.session, user.id)
    else:
        lockout.unlock(user)
    user.updated_at = utcnow()
    event = "user_locked" if locked else "user_unlocked"
    reason = "cli" if isinstance(actor, audit.CliOperator) else "api"
    audit.record(event, tenant=user.tenant.name, actor=actor, user_id=user.id, reason=reason)


def revoke_sessions(user: User, actor: audit.Actor | None, revoker: Revoker) -> int:
    """Revoke every refresh token of the user and every access token issued so far."""
    revoked = revoke_user_tokens(user.id)
    revoker.user_tokens(db.session, user.id)
    audit.record(
        "tokens_revoked", tenant=user.tenant.name, actor=actor, user_id=user.id, revoked=revoked
    )
    return revoked


def lock_status(user: User, now: datetime) -> dict[str, Any]:
    return {
        "username": user.username,
        "locked": lockout.is_locked(user, now),
        "badAttemptsSinceLastSuccessOrReset": user.bad_attempts,
        "lastFailureDate": rfc3339(user.last_failure_at),
    }
