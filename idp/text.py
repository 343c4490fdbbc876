"""Untrusted text on its way out: into a database lookup, or into an error description.

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


# RFC 6749 §5.2 and RFC 6750 §3 allow %x20-21 / %x23-5B / %x5D-7E in error_description.
MAX_DESCRIPTION_LENGTH = 300


def safe_description(text: str) -> str:
    """``text`` fit for ``error_description``, in a JSON body or a quoted header value:
    every character outside that set (a quote, a backslash, a control character, anything
    beyond ASCII) becomes ``'``, so nothing can end a quoted-string early."""
    cleaned = "".join(c if " " <= c <= "~" and c not in '"\\' else "'" for c in text)
    return cleaned[:MAX_DESCRIPTION_LENGTH]
