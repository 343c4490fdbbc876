"""Scope strings (RFC 6749 §3.3): space-separated tokens of printable ASCII without quotes."""

from __future__ import annotations

import re

from idp.errors import IdpError

_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]{1,128}$")


def parse_scope(text: str | None) -> list[str]:
    """Split and validate; order kept, duplicates dropped."""
    tokens = (text or "").split()
    for token in tokens:
        if not _SCOPE_TOKEN.match(token):
            raise IdpError(f"invalid scope token {token!r}")
    return list(dict.fromkeys(tokens))
