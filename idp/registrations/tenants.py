from __future__ import annotations

import re

from sqlalchemy import select

from idp import audit
from idp.errors import IdpError
from idp.models import Tenant, db

_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def create_tenant(name: str, actor: audit.Actor | None = None) -> Tenant:
    if not _TENANT_NAME.match(name):
        raise IdpError(
            f"invalid tenant name {name!r}: use 1-64 lower-case letters, digits, '-' or '_'"
        )
    if find_tenant(name) is not None:
        raise IdpError(f"tenant {name!r} already exists")
    tenant = Tenant(name=name)
    db.session.add(tenant)
    db.session.flush()
    audit.record("tenant_created", tenant=name, actor=actor)
    return tenant


def find_tenant(name: str) -> Tenant | None:
    return db.session.scalar(select(Tenant).where(Tenant.name == name))


def require_tenant(name: str) -> Tenant:
    tenant = find_tenant(name)
    if tenant is None:
        raise IdpError(f"no tenant named {name!r}")
    return tenant


def ensure_tenant(name: str, actor: audit.Actor | None = None) -> Tenant:
    return find_tenant(name) or create_tenant(name, actor)


def list_tenants() -> list[Tenant]:
    return list(db.session.scalars(select(Tenant).order_by(Tenant.name)))
