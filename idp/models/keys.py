"""Signing keys held in the database, for instances that share no file system."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base

__all__ = ["KEYS_REGISTRY", "SigningKey"]

# The registry_versions row bumped by every change to the keys: workers compare it
# instead of re-reading (and decrypting) every key, and writers lock it to serialise.
KEYS_REGISTRY = "keys"


class SigningKey(Base):
    """One signing key: its state and its private JWK sealed with AES-256-GCM under the
    key-encryption key (IDP_KEYS_ENCRYPTION_KEY), which never reaches the database."""

    __tablename__ = "signing_keys"
    __table_args__ = (CheckConstraint("state IN ('next', 'active', 'retired')", name="state"),)

    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    # 12-byte nonce, then ciphertext and tag; the kid is the associated data, so a sealed
    # key copied onto another row does not open.
    sealed_jwk: Mapped[bytes] = mapped_column(LargeBinary)
    # Names the key-encryption key that sealed it (a hash, not the key), so a wrong
    # IDP_KEYS_ENCRYPTION_KEY is reported as such rather than as corrupt data.
    kek_id: Mapped[str] = mapped_column(String(32))
