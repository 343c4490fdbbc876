"""Opaque, tamper-proof cursors for keyset paging of the /users list.

A cursor names the last row of a page by its place in the list order (created_at, id)
and carries an HMAC-SHA256 tag over that place, the tenant and a digest of the
filters. The tag is all that makes a cursor valid: one that was forged, cut short, or
issued for another tenant or other filters does not verify and is refused before any
query runs. The key is a random secret kept in the database (idp.keys.server_secrets),
so every worker and host accepts the cursors of the others, with nothing to configure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SECRET_NAME = "list_cursor"  # noqa: S105 (the row's name, not a secret)
_VERSION = 1
# version, microseconds since the epoch, the user id's 16 bytes
_POSITION = struct.Struct(">Bq16s")
_TAG_LENGTH = 16  # 128 bits of HMAC-SHA256: forging one is out of reach
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CONTEXT = b"idp users list cursor\x00"


class InvalidCursor(ValueError):
    """The cursor was not issued by this server for this tenant and these filters."""


@dataclass(frozen=True)
class Position:
    """A row's place in the list order."""

    created_at: datetime
    user_id: str


def filters_digest(filters: Mapping[str, Any]) -> bytes:
    canonical = json.dumps(dict(filters), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).digest()


def _tag(key: bytes, tenant_id: int, filters: Mapping[str, Any], body: bytes) -> bytes:
    message = _CONTEXT + struct.pack(">q", tenant_id) + filters_digest(filters) + body
    return hmac.new(key, message, hashlib.sha256).digest()[:_TAG_LENGTH]


def encode(key: bytes, tenant_id: int, filters: Mapping[str, Any], position: Position) -> str:
    """``key`` is the server secret named ``SECRET_NAME`` (idp.keys.server_secrets)."""
    micros = (position.created_at - _EPOCH) // timedelta(microseconds=1)
    body = _POSITION.pack(_VERSION, micros, uuid.UUID(position.user_id).bytes)
    tag = _tag(key, tenant_id, filters, body)
    return base64.urlsafe_b64encode(body + tag).rstrip(b"=").decode("ascii")


def decode(key: bytes, tenant_id: int, filters: Mapping[str, Any], cursor: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("the cursor is not one this server issued") from None
    if len(raw) != _POSITION.size + _TAG_LENGTH:
        raise InvalidCursor("the cursor is not one this server issued")
    body, tag = raw[: _POSITION.size], raw[_POSITION.size :]
    if not hmac.compare_digest(tag, _tag(key, tenant_id, filters, body)):
        raise InvalidCursor(
            "the cursor does not belong to this list: it was altered, or issued for other"
            " filters or another tenant"
        )
    version, micros, user_id = _POSITION.unpack(body)
    if version != _VERSION:
        raise InvalidCursor("the cursor is not one this server issued")
    try:
        created_at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise InvalidCursor("the cursor is not one this server issued") from None
    return Position(created_at, str(uuid.UUID(bytes=user_id)))
