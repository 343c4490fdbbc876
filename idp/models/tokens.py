"""Server-side token state: refresh tokens, used assertion jtis, and revocations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, new_uuid, utcnow


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(36))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(2000))
    auth_time: Mapped[datetime]
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # The login's binding and audience: a refresh must prove possession anew (RFC 9449
    # §5) and may narrow its resources, never widen them (RFC 8707 §2.2).
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    resources: Mapped[list[str] | None]


class ReplayEntry(Base):
    """A client assertion jti already seen; the primary key makes the claim atomic."""

    __tablename__ = "replay_entries"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Revocation(Base):
    """Tokens issued up to ``revoked_at_ms`` that match ``key`` are dead.

    ``key`` names what was revoked: ``jti:…`` one access token, ``sid:…`` a login's
    refresh-token family, ``user:…`` or ``client:…`` everything issued for that subject.
    Kept until no token it can match is still unexpired.
    """

    __tablename__ = "revocations"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    revoked_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(index=True)
