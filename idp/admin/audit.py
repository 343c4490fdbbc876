"""Reading the audit trail: events newest first, filtered by age and user."""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from idp.errors import IdpError
from idp.keys.durations import parse_duration
from idp.models import AuditEvent, db

DEFAULT_LIMIT = 100


def parse_since(text: str, now: datetime) -> datetime:
    """A duration as the key schedule takes one (``90d``, ``12h``, ``30m``, ``3600s``: that
    long before ``now``) or an RFC 3339 time."""
    value = text.strip()
    seconds: int | None = None
    if value[-1:].isalpha():  # here a duration names its unit: a bare number is no time
        with suppress(IdpError):  # else perhaps a time ending in Z
            seconds = parse_duration(value)
    if seconds is not None:
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise IdpError(f"--since {text!r} reaches before the year 1") from None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    # RFC 3339 times are a date and a time with an offset; a bare date or a local time
    # would be read in some unknown zone.
    if moment is None or "T" not in value.upper() or moment.tzinfo is None:
        raise IdpError(
            f"--since must be a duration (90d, 12h, 30m, 3600s) or an RFC 3339 time "
            f"such as 2025-01-31T12:00:00Z, got {text!r}"
        )
    return moment


def parse_limit(text: str) -> int:
    try:
        limit = int(text.strip())
    except ValueError:
        limit = 0
    if limit < 1:
        raise IdpError(f"--limit must be a whole number of at least 1, got {text!r}")
    return limit


def list_events(
    since: datetime | None = None, user_id: str | None = None, limit: int = DEFAULT_LIMIT
) -> list[AuditEvent]:
    """Newest first; the id breaks ties between events recorded in the same instant."""
    query = select(AuditEvent)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    query = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    return list(db.session.scalars(query))


def event_record(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        # Microseconds kept: events of one request are often within the same second.
        "at": event.at.isoformat(),
        "event": event.event,
        "tenant": event.tenant,
        "client_id": event.client_id,
        "user_id": event.user_id,
        "request_id": event.request_id,
        "detail": event.detail or {},
    }
