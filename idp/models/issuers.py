"""Trusted assertion issuers of the jwt-bearer grant (RFC 7523 §2.1), per tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.models.base import Base, utcnow
from idp.models.tenants import Tenant


class TrustedIssuer(Base):
    __tablename__ = "trusted_issuers"
    __table_args__ = (UniqueConstraint("tenant_id", "issuer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    issuer: Mapped[str] = mapped_column(String(2000))
    jwks: Mapped[dict[str, Any] | None]
    jwks_uri: Mapped[str | None] = mapped_column(String(2000))
    # Create a user on the first assertion about an unknown subject.
    provision: Mapped[bool] = mapped_column(default=False)
    # The most a token obtained with this issuer's assertions may carry; None = no cap.
    scopes: Mapped[list[str] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship(lazy="joined")
