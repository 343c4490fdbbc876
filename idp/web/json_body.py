"""Strict reading of JSON request bodies, shared by the token endpoint and the /users API.

RFC 8259 §4 leaves the meaning of an object whose names repeat to the reader ("the
behavior ... is unpredictable"); Python keeps the last value, other parsers the first.
A body read differently by a proxy and by idp is an attack surface, so a repeated name
is refused, as a form parameter given twice is. Nesting too deep for the parser is
refused like any malformed body rather than surfacing as a RecursionError.
"""

from __future__ import annotations

import json
from typing import Any


class JsonRefused(ValueError):
    """The body is not one unambiguous JSON text. ``name`` is the repeated member name,
    when that is why."""

    def __init__(self, reason: str, name: str | None = None) -> None:
        super().__init__(reason)
        self.name = name


def load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw, object_pairs_hook=_unique_members)
    except JsonRefused:
        raise
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON and bytes that are not UTF-8/16/32 text.
        raise JsonRefused("the body is not valid JSON") from None


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise JsonRefused(f"member '{name}' is given more than once", name)
            seen.add(name)
    return members
