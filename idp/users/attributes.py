"""User attributes: typed name/value pairs on a user (OBP user attributes).

A personal attribute belongs to the user alone: it is made, read, changed and deleted
through the user's own token, and the management routes never see it. As in idp.users.service, each
operation adds rows and its audit event to the caller's session; the caller commits.
"""

from __future__ import annotations

import math
import re
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.errors import IdpError
from idp.models import User, UserAttribute, db, utcnow
from idp.models.base import new_uuid
from idp.users.service import Conflict

TYPES = ("STRING", "INTEGER", "DOUBLE", "DATE_WITH_DAY")
NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_VALUE_LENGTH = 1024
# A user holds at most this many attributes of each kind (personal, and the others): a
# user's own token must not grow its rows, or the unpaged lists, without bound, and its
# personal ones must not crowd out those its managers set. The bound holds under concurrent
# creations too (add_attribute counts while no other creation for the user can commit).
MAX_ATTRIBUTES = 100

# ASCII digits only: str.isdigit and \d also accept other scripts' digits.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ATTRIBUTE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class InvalidAttribute(IdpError):
    """A name, type or value the attribute rules refuse; ``field`` says which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _finite_decimal(value: str) -> bool:
    # The pattern keeps out what float() would also take: nan, inf, "1_0", spaces, hex.
    return _DECIMAL.fullmatch(value) is not None and math.isfinite(float(value))


def _calendar_date(value: str) -> bool:
    if _DATE.fullmatch(value) is None:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


_PARSERS = {
    "STRING": (lambda value: True, "any string"),
    "INTEGER": (lambda value: _INTEGER.fullmatch(value) is not None, "an optional sign and digits"),
    "DOUBLE": (_finite_decimal, "a finite decimal number such as -1.5 or 2e10"),
    "DATE_WITH_DAY": (_calendar_date, "a calendar date written YYYY-MM-DD"),
}


def check_attribute(name: str, type_: str, value: str) -> None:
    """Raise InvalidAttribute unless ``name`` is well formed and ``value`` parses as
    ``type_``."""
    if NAME.fullmatch(name) is None:
        raise InvalidAttribute("name", "the name must be 1 to 64 of A-Z a-z 0-9 _ . -")
    if type_ not in _PARSERS:
        raise InvalidAttribute("type", f"the type must be one of {', '.join(TYPES)}")
    check_value(type_, value)


def check_value(type_: str, value: str) -> None:
    """Raise InvalidAttribute unless ``value`` parses as ``type_`` (the value itself is
    never quoted back: it may be personal)."""
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidAttribute("value", f"the value must be at most {MAX_VALUE_LENGTH} characters")
    parses, expected = _PARSERS[type_]
    if not parses(value):
        raise InvalidAttribute("value", f"the value is not a valid {type_}: expected {expected}")


def list_attributes(user: User, *, personal: bool) -> list[UserAttribute]:
    """The user's personal attributes, or its other ones."""
    return list(
        db.session.scalars(
            select(UserAttribute)
            .where(UserAttribute.user_id == user.id, UserAttribute.is_personal.is_(personal))
            .order_by(UserAttribute.created_at, UserAttribute.name)
        )
    )


def find_attribute(user: User, attribute_id: str, *, personal: bool) -> UserAttribute | None:
    """One of the user's attributes of that kind; another user's, or one of the other
    kind, is not found."""
    if _ATTRIBUTE_ID.fullmatch(attribute_id) is None:
        return None
    return db.session.scalar(
        select(UserAttribute).where(
            UserAttribute.id == attribute_id,
            UserAttribute.user_id == user.id,
            UserAttribute.is_personal.is_(personal),
        )
    )


def add_attribute(
    user: User, *, name: str, type_: str, value: str, personal: bool, actor: str | None
) -> UserAttribute:
    """Add the attribute, or raise InvalidAttribute or Conflict. A Conflict found after the
    row was written rolls the session back: call it before the request writes anything else."""
    check_attribute(name, type_, value)
    _serialise_additions(user)
    # Among the user's attributes of this kind only: the management routes must not learn
    # the names of personal attributes from a clash.
    taken = select(UserAttribute.id).where(
        UserAttribute.user_id == user.id,
        UserAttribute.is_personal.is_(personal),
        UserAttribute.name == name,
    )
    if db.session.scalar(taken) is not None:
        raise Conflict(f"the user already has an attribute named {name!r}")
    attribute = UserAttribute(
        id=new_uuid(),
        user_id=user.id,
        name=name,
        type=type_,
        value=value,
        is_personal=personal,
        created_at=utcnow(),
    )
    db.session.add(attribute)
    try:
        db.session.flush()
    except IntegrityError:  # the same name, added by a concurrent request
        db.session.rollback()
        raise Conflict(f"the user already has an attribute named {name!r}") from None
    # Counted after the write, inside its transaction: the new row is included, and no
    # concurrent addition for this user can commit before this transaction ends.
    if _held(user, personal=personal) > MAX_ATTRIBUTES:
        db.session.rollback()
        kind = "personal" if personal else "non-personal"
        raise Conflict(f"the user already has {MAX_ATTRIBUTES} {kind} attributes, the most allowed")
    audit.record(
        "user_attribute_created",
        tenant=user.tenant.name,
        client_id=actor,
        user_id=user.id,
        attribute_id=attribute.id,
        name=name,
        type=type_,
        personal=personal,
    )
    return attribute


def _serialise_additions(user: User) -> None:
    """Make additions to one user's attributes take turns until this transaction ends.

    PostgreSQL: the user's row is locked (FOR NO KEY UPDATE, which leaves the foreign-key
    checks of other tables' inserts alone), so a concurrent addition waits here and then
    counts the rows this one committed. SQLite renders no FOR clause: it lets one
    transaction write at a time, and add_attribute counts only once its own write has
    taken that lock.
    """
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))


def _held(user: User, *, personal: bool) -> int:
    held = select(func.count()).where(
        UserAttribute.user_id == user.id, UserAttribute.is_personal.is_(personal)
    )
    return db.session.scalar(held) or 0


def update_attribute(
    user: User, attribute: UserAttribute, value: str, actor: str | None
) -> UserAttribute:
    """Give the attribute a new value of its type, or raise InvalidAttribute."""
    check_value(attribute.type, value)
    attribute.value = value
    audit.record(
        "user_attribute_updated",
        tenant=user.tenant.name,
        client_id=actor,
        user_id=user.id,
        attribute_id=attribute.id,
        name=attribute.name,
        personal=attribute.is_personal,
    )
    return attribute


def delete_attribute(user: User, attribute: UserAttribute, actor: str | None) -> None:
    db.session.delete(attribute)
    audit.record(
        "user_attribute_deleted",
        tenant=user.tenant.name,
        client_id=actor,
        user_id=user.id,
        attribute_id=attribute.id,
        name=attribute.name,
    )
