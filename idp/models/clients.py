from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.models.base import Base, new_client_id, utcnow
from idp.models.tenants import Tenant
from idp.registry import AUTH_METHODS, GRANT_TYPES, SECRET_AUTH_METHODS

__all__ = [
    "AUTH_METHODS",
    "GRANT_TYPES",
    "SECRET_AUTH_METHODS",
    "Client",
    "ClientRegistration",
    "RegistryVersion",
    "hash_client_secret",
]


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
    # Sender-constrained and audience-restricted tokens (RFC 9449, 8705, 8707; FAPI 2.0).
    resources: Mapped[list[str]] = mapped_column(default=list)
    dpop_bound: Mapped[bool] = mapped_column(default=False)
    profile: Mapped[str | None] = mapped_column(String(16))
    tls_subject_dn: Mapped[str | None] = mapped_column(String(1000))
    tls_san: Mapped[dict[str, Any] | None]  # {"dns": name} or {"uri": uri}
    tls_bound_tokens: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship(lazy="joined")

    def check_secret(self, secret: str) -> bool:
        return _secret_matches(self.secret_hash, secret)


def _secret_matches(secret_hash: str | None, secret: str) -> bool:
    if secret_hash is None:
        return False
    return hmac.compare_digest(secret_hash, hash_client_secret(secret))


@dataclass(frozen=True)
class ClientRegistration:
    """An immutable copy of a client's registration: what a worker may keep between
    requests, as long as it drops it when the registry version changes."""

    id: str
    tenant_id: int
    tenant_name: str
    auth_method: str
    secret_hash: str | None
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    access_token_ttl: int | None
    refresh_token_ttl: int | None
    refresh_reuse_grace: int | None
    resources: tuple[str, ...] = ()
    dpop_bound: bool = False
    profile: str | None = None
    tls_subject_dn: str | None = None
    tls_san: tuple[str, str] | None = None  # ("dns" or "uri", value)
    tls_bound_tokens: bool = False

    @classmethod
    def of(cls, row: Client, tenant_name: str) -> ClientRegistration:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            tenant_name=tenant_name,
            auth_method=row.auth_method,
            secret_hash=row.secret_hash,
            jwks=row.jwks,
            jwks_uri=row.jwks_uri,
            grant_types=tuple(row.grant_types),
            scopes=tuple(row.scopes),
            access_token_ttl=row.access_token_ttl,
            refresh_token_ttl=row.refresh_token_ttl,
            refresh_reuse_grace=row.refresh_reuse_grace,
            resources=tuple(row.resources or ()),
            dpop_bound=bool(row.dpop_bound),
            profile=row.profile,
            tls_subject_dn=row.tls_subject_dn,
            tls_san=next(iter(row.tls_san.items())) if row.tls_san else None,
            tls_bound_tokens=bool(row.tls_bound_tokens),
        )

    def check_secret(self, secret: str) -> bool:
        return _secret_matches(self.secret_hash, secret)


class RegistryVersion(Base):
    """A counter bumped in the transaction that changes or deletes a client, so that every
    worker's cache of registrations (idp.oauth.clients) sees the change at its next check."""

    __tablename__ = "registry_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(default=0)
