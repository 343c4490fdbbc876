"""Users known through another party: linked to (provider, subject), where the provider is
a trusted issuer of the jwt-bearer grant, and created on first use when it may provision."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.models import Tenant, User, db, utcnow
from idp.models.base import new_uuid
from idp.users.usernames import InvalidUsername, username_key

MAX_SUBJECT_LENGTH = 255  # the users.subject column
MAX_USERNAME_LENGTH = 200  # the users.username column


class ProvisioningRefused(Exception):
    """The new user cannot be created: a name PRECIS refuses, or one already taken."""


def find_linked_user(tenant_id: int, provider: str, subject: str) -> User | None:
    """The user linked to (provider, subject), deleted or not: a deletion ends the user,
    not the link, so the subject can never be provisioned as someone new."""
    return db.session.scalar(
        select(User).where(
            User.tenant_id == tenant_id, User.provider == provider, User.subject == subject
        )
    )


def provision_linked_user(
    tenant: Tenant, provider: str, subject: str, username: str, scopes: list[str], client_id: str
) -> User:
    """A new password-less user linked to (provider, subject). Two first uses racing on
    two workers create one user: the loser's insert hits the unique link and finds the
    winner's row instead. Call it before the request writes anything else: the loser's
    session is rolled back."""
    if len(username) > MAX_USERNAME_LENGTH:
        raise ProvisioningRefused(f"username is longer than {MAX_USERNAME_LENGTH} characters")
    try:
        key = username_key(username)
    except InvalidUsername as exc:
        raise ProvisioningRefused(f"username is not acceptable: {exc}") from None
    now = utcnow()
    user = User(
        id=new_uuid(),
        tenant=tenant,
        provider=provider,
        subject=subject,
        username=username,
        username_key=key,
        scopes=scopes,
        created_at=now,
        updated_at=now,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        winner = find_linked_user(tenant.id, provider, subject)
        if winner is None:
            raise ProvisioningRefused(f"username {username!r} is taken at this issuer") from None
        return winner
    audit.record(
        "user_provisioned",
        tenant=tenant.name,
        client_id=client_id,
        user_id=user.id,
        provider=provider,
    )
    return user
