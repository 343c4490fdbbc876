"""Refresh tokens: opaque, stored as a SHA-256 hash, rotated on every use, revoked by family.

Consuming a token is one conditional UPDATE, so two concurrent uses cannot both win:
the database serialises them and the loser sees the token already used, which is
reuse, and revokes the whole family, unless it is a retry within the client's grace
period, which replaces the successor instead.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.sql import ColumnElement

from idp.models import RefreshToken, db, utcnow
from idp.models.base import new_uuid

TOKEN_BYTES = 32  # 256 bits


def new_refresh_token(**_: object) -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Lineage:
    """Where a new refresh token comes from: a fresh login or the token it replaces."""

    family_id: str
    parent_id: str | None
    auth_time: datetime
    expires_at: datetime | None
    scope: str


def fresh_lineage(scope: str, lifetime: int, now: datetime) -> Lineage:
    expires = now + timedelta(seconds=lifetime) if lifetime else None
    return Lineage(new_uuid(), None, now, expires, scope)


def child_lineage(parent: RefreshToken) -> Lineage:
    # The absolute lifetime runs from the login, and the scope stays the original (RFC 6749 §6).
    return Lineage(parent.family_id, parent.id, parent.auth_time, parent.expires_at, parent.scope)


def store(token: str, lineage: Lineage, client_id: str, user_id: str, tenant_id: int) -> None:
    db.session.add(
        RefreshToken(
            token_hash=token_hash(token),
            family_id=lineage.family_id,
            parent_id=lineage.parent_id,
            client_id=client_id,
            user_id=user_id,
            tenant_id=tenant_id,
            scope=lineage.scope,
            auth_time=lineage.auth_time,
            expires_at=lineage.expires_at,
        )
    )


class RefreshTokenReused(Exception):
    def __init__(self, row: RefreshToken) -> None:
        super().__init__("refresh token reused")
        self.row = row


def consume(token: str, client_id: str, grace: int = 0) -> RefreshToken | None:
    """Mark the token used, atomically. None if unknown, foreign, revoked or expired.

    With a ``grace`` of G seconds, a token used again by its client within G seconds of
    its first use is a retry: its live successor is revoked (one conditional UPDATE, so
    of several concurrent retries exactly one wins) and the token is returned to be
    rotated again, so the family still has a single usable token.
    Raises RefreshTokenReused when the token had already been used otherwise.
    """
    now = utcnow()
    digest = token_hash(token)
    consumed = db.session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == digest,
            RefreshToken.client_id == client_id,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(used_at=now)
        .returning(RefreshToken.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    row = db.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))
    if row is None or row.client_id != client_id:
        return None
    if consumed is None:
        if row.used_at is None:
            return None  # revoked
        if not _is_retry(row, grace, now):
            raise RefreshTokenReused(row)
        if not _revoke_successor(row, now):
            if _successor_was_used(row):
                raise RefreshTokenReused(row)  # the family moved on: not a retry
            return None  # a concurrent retry won, or the family was revoked
    db.session.refresh(row)
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return row


def _is_retry(row: RefreshToken, grace: int, now: datetime) -> bool:
    return bool(grace) and row.used_at is not None and now - row.used_at <= timedelta(seconds=grace)


def _revoke_successor(row: RefreshToken, now: datetime) -> bool:
    revoked = db.session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.parent_id == row.id,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .returning(RefreshToken.id)
        .execution_options(synchronize_session=False)
    ).all()
    return bool(revoked)


def _successor_was_used(row: RefreshToken) -> bool:
    used = select(RefreshToken.id).where(
        RefreshToken.parent_id == row.id, RefreshToken.used_at.is_not(None)
    )
    return db.session.scalar(used.limit(1)) is not None


def find(token: str) -> RefreshToken | None:
    return db.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash(token))
    )


def revoke_family(family_id: str) -> int:
    return _revoke(RefreshToken.family_id == family_id)


def revoke_user_tokens(user_id: str) -> int:
    return _revoke(RefreshToken.user_id == user_id)


def _revoke(condition: ColumnElement[bool]) -> int:
    """Revoke the live (unused, unrevoked, unexpired) tokens matching ``condition``."""
    now = utcnow()
    result = db.session.execute(
        update(RefreshToken)
        .where(
            condition,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.used_at.is_(None),
            RefreshToken.expires_at.is_(None) | (RefreshToken.expires_at > now),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount or 0
