"""User lifecycle operations shared by the CLI and the /users API."""

from __future__ import annotations

from sqlalchemy import select

from idp.admin.tenants import require_tenant
from idp.errors import IdpError
from idp.models import User, db, utcnow
from idp.scopes import parse_scope
from idp.users.passwords import check_policy, hash_password


def create_user(
    tenant_name: str, username: str, password: str | None, email: str | None, scope: str | None
) -> User:
    tenant = require_tenant(tenant_name)
    taken = db.session.scalar(
        select(User.id).where(
            User.tenant_id == tenant.id, User.username == username, User.deleted_at.is_(None)
        )
    )
    if taken:
        raise IdpError(f"user {username!r} already exists in tenant {tenant_name!r}")
    if password is not None:
        check_policy(password)
    now = utcnow()
    user = User(
        tenant=tenant,
        username=username,
        email=email,
        scopes=parse_scope(scope),
        password_hash=hash_password(password) if password is not None else None,
        password_changed_at=now if password is not None else None,
        created_at=now,
        updated_at=now,
    )
    db.session.add(user)
    db.session.commit()
    return user
