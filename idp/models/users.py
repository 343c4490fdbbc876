from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.models.base import Base, new_uuid, utcnow
from idp.models.tenants import Tenant

_ALIVE = text("deleted_at IS NULL")
_LINKED = text("subject IS NOT NULL")
# Users a lock may hold: an operator's lock, or a bad-password lock that has not been
# cleared yet (it may have lapsed). Few rows, so ?locked= reads a small index.
LOCK_CANDIDATE = "deleted_at IS NULL AND (locked OR locked_until IS NOT NULL)"
_LOCK_CANDIDATE = text(LOCK_CANDIDATE)


def _listing(name: str, *columns: str, where: Any = _ALIVE) -> Index:
    """An index serving one /users list filter in the list order (created_at, id), so a
    page, keyset or offset, is a range read that stops after ``limit`` rows."""
    return Index(
        name, "tenant_id", *columns, "created_at", "id", sqlite_where=where, postgresql_where=where
    )


# The provider of users created through the API or CLI; jwt-bearer users have their
# issuer's identifier instead (idp.oauth.grants.jwt_bearer).
LOCAL_PROVIDER = "local"


class User(Base):
    __tablename__ = "users"
    # Names are unique among live users only, so a soft-deleted name can be reused.
    # Usernames are unique per provider by their RFC 8265 comparison form
    # (idp.users.usernames), so "Alice" and "alice" cannot be two local accounts, while an
    # issuer's "alice" is another person; ``username`` keeps the form given.
    __table_args__ = (
        Index(
            "uq_users_tenant_provider_username_key",
            "tenant_id",
            "provider",
            "username_key",
            unique=True,
            sqlite_where=_ALIVE,
            postgresql_where=_ALIVE,
        ),
        # A jwt-bearer user is the one linked to (issuer, subject) in its tenant. Unlike a
        # name, the link outlives the user's deletion, so a deleted user stays deleted: its
        # issuer cannot bring it back as a new user by asserting the subject again.
        Index(
            "uq_users_tenant_provider_subject",
            "tenant_id",
            "provider",
            "subject",
            unique=True,
            sqlite_where=_LINKED,
            postgresql_where=_LINKED,
        ),
        Index(
            "uq_users_client_client_user_id",
            "client_id",
            "client_user_id",
            unique=True,
            sqlite_where=_ALIVE,
            postgresql_where=_ALIVE,
        ),
        _listing("ix_users_list"),
        _listing("ix_users_list_username_key", "username_key"),
        _listing("ix_users_list_email", "email"),
        _listing("ix_users_list_client_user_id", "client_user_id"),
        _listing("ix_users_list_client_id", "client_id"),
        _listing("ix_users_list_locked", where=_LOCK_CANDIDATE),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    client_user_id: Mapped[str | None] = mapped_column(String(200))
    username: Mapped[str | None] = mapped_column(String(200))
    username_key: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(
        String(2000), default=LOCAL_PROVIDER, server_default=LOCAL_PROVIDER
    )
    subject: Mapped[str | None] = mapped_column(String(255))  # the user's sub at its provider
    scopes: Mapped[list[str]] = mapped_column(default=list)
    user_type: Mapped[str] = mapped_column(String(32), default="user")
    managed_by: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    password_changed_at: Mapped[datetime | None]
    locked: Mapped[bool] = mapped_column(default=False)
    bad_attempts: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    last_accessed: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]

    tenant: Mapped[Tenant] = relationship(lazy="joined")


class UserAttribute(Base):
    """A typed name/value pair on a user (OBP user attributes); personal ones are visible
    to the user alone, through /users/me/attributes."""

    __tablename__ = "user_attributes"
    # A name is unique among one kind of the user's attributes: a manager's clash with a
    # personal name it cannot see would tell it that name.
    __table_args__ = (
        UniqueConstraint(
            "user_id", "is_personal", "name", name="uq_user_attributes_user_id_is_personal_name"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(1024))
    is_personal: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserCount(Base):
    """Live users per tenant and managing client ('' for none), so the list's ``total``
    is read, not counted. Database triggers on ``users`` (installed by the migration)
    keep it in the transaction of every insert, soft delete and hard delete, whoever
    writes: the API, the CLI, jwt-bearer provisioning or plain SQL."""

    __tablename__ = "user_counts"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    live: Mapped[int] = mapped_column(BigInteger, default=0)


class ServerSecret(Base):
    """Random keys shared by every worker and host through the database (created by the
    migration, or on first use), e.g. the one that signs list cursors."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
