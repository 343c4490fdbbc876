from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, utcnow

# 64-bit on PostgreSQL: at a hundred events a second a 32-bit sequence runs out within
# a year, and every audited request would fail with it. SQLite's rowid is 64-bit already,
# and only a column declared INTEGER is that rowid.
EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    __tablename__ = "audit_events"
    # One user's events, newest first (``idp audit list --user``), read from this index
    # alone, however long the trail grows.
    __table_args__ = (Index("ix_audit_events_user_id_at", "user_id", "at", "id"),)

    id: Mapped[int] = mapped_column(EVENT_ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str | None] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(36))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The X-Request-ID of the request that caused the event, to join it with log lines.
    request_id: Mapped[str | None] = mapped_column(String(128))
