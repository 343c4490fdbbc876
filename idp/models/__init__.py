"""Typed SQLAlchemy 2 models; importing this package registers every table on ``db``."""

from idp.models.audit import AuditEvent
from idp.models.base import Base, db, utcnow
from idp.models.clients import (
    AUTH_METHODS,
    GRANT_TYPES,
    SECRET_AUTH_METHODS,
    Client,
    ClientRegistration,
    RegistryVersion,
)
from idp.models.issuers import TrustedIssuer
from idp.models.keys import KEYS_REGISTRY, SigningKey
from idp.models.tenants import DEFAULT_TENANT, Tenant
from idp.models.tokens import RefreshToken, ReplayEntry, Revocation
from idp.models.users import LOCAL_PROVIDER, User, UserAttribute

__all__ = [
    "AUTH_METHODS",
    "DEFAULT_TENANT",
    "GRANT_TYPES",
    "KEYS_REGISTRY",
    "LOCAL_PROVIDER",
    "SECRET_AUTH_METHODS",
    "AuditEvent",
    "Base",
    "Client",
    "ClientRegistration",
    "RefreshToken",
    "RegistryVersion",
    "ReplayEntry",
    "Revocation",
    "SigningKey",
    "Tenant",
    "TrustedIssuer",
    "User",
    "UserAttribute",
    "db",
    "utcnow",
]
