"""The Moneyhub-style (camelCase) JSON views of a user and its attributes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from idp.models import LOCAL_PROVIDER, User, UserAttribute, utcnow
from idp.users.lockout import is_locked


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# A response body in its JSON shape, as the API answers it and the CLI prints it.
Record = dict[str, Any]


def user_record(user: User) -> Record:
    return {
        "userId": user.id,
        "clientUserId": user.client_user_id,
        "clientId": user.client_id,
        "tenant": user.tenant.name,
        "username": user.username,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "provider": user.provider or LOCAL_PROVIDER,
        "scopes": list(user.scopes),
        "userType": user.user_type,
        "managedBy": user.managed_by,
        "createdAt": rfc3339(user.created_at),
        "updatedAt": rfc3339(user.updated_at),
        "lastAccessed": rfc3339(user.last_accessed),
        "deletedAt": rfc3339(user.deleted_at),
        "locked": is_locked(user, utcnow()),
    }


def attribute_record(attribute: UserAttribute) -> dict[str, Any]:
    return {
        "attributeId": attribute.id,
        "name": attribute.name,
        "type": attribute.type,
        "value": attribute.value,
        "isPersonal": attribute.is_personal,
        "createdAt": rfc3339(attribute.created_at),
    }
