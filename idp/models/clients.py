from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.models.base import Base, new_client_id, utcnow
from idp.models.tenants import Tenant
from idp.registry import AUTH_METHODS, GRANT_TYPES, SECRET_AUTH_METHODS

__all__ = ["AUTH_METHODS", "GRANT_TYPES", "SECRET_AUTH_METHODS", "Client", "hash_client_secret"]


def hash_client_secret(secret: str) -> str:
    """SHA-256 suffices: generated secrets carry 256 bits, so no stretching is needed."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_client_id)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    auth_method: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    jwks: Mapped[dict[str, Any] | None]
    jwks_uri: Mapped[str | None] = mapped_column(String(2000))
    grant_types: Mapped[list[str]]
    scopes: Mapped[list[str]]
    access_token_ttl: Mapped[int | None]
    refresh_token_ttl: Mapped[int | None]
    refresh_reuse_grace: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship(lazy="joined")

    def check_secret(self, secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(self.secret_hash, hash_client_secret(secret))
