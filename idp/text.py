"""Text that can reach a database: the test every untrusted string passes before a lookup.

PostgreSQL refuses NUL in ``text`` and ``varchar`` values, and no driver can encode a
lone surrogate (U+D800-U+DFFF) as UTF-8 (RFC 3629 §3). Such a value can never equal a
stored one, so a lookup by it answers "not found" without asking the database.
"""

from __future__ import annotations


def is_storable(value: str) -> bool:
    """True unless ``value`` holds NUL or a lone surrogate."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True  # the common case, without building the encoded copy
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
