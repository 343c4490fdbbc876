"""The comparison form of a username (RFC 8265, UsernameCaseMapped profile).

Two names that a person cannot tell apart must not be two accounts: ``alice``,
``Alice`` and ``alice`` in full-width letters (U+FF41...) are one name in a tenant.
The name is kept and shown as given; only its key (this module's result) is
compared and indexed.
"""

from __future__ import annotations

import unicodedata

import precis_i18n

from idp.errors import IdpError

# RFC 8265's UsernameCaseMapped profile: width mapping, lower-casing and NFC over
# the PRECIS IdentifierClass repertoire, which refuses spaces, controls and
# default-ignorable code points (ZERO WIDTH SPACE, ZERO WIDTH JOINER): invisible
# characters would let two names look alike yet compare different.
_PROFILE = precis_i18n.get_profile("UsernameCaseMapped")

# The column holding the key is String(200); case mapping can lengthen a name
# (U+0130 becomes two code points), so the key's length is checked, not the input's.
MAX_KEY_LENGTH = 200

# Scripts whose letters are confusable with one another (Latin "c" and Cyrillic
# es U+0441, Latin "o" and Greek omicron U+03BF). PRECIS (RFC 8264, on which RFC 8265 builds)
# leaves visually similar characters to the application's policy. Refusing a mix
# stops look-alikes of existing Latin names, while names written wholly in one
# of these scripts stay allowed.
_CONFUSABLE_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")


class InvalidUsername(IdpError):
    """The name cannot be a username: the message says which rule it breaks."""


def username_key(name: str) -> str:
    """The form usernames are compared and indexed by; raises InvalidUsername."""
    key = _enforce(name)
    scripts = _letter_scripts(key)
    if len(scripts) > 1:
        raise InvalidUsername(
            f"username {name!r} is not allowed: it mixes letters of the "
            f"{' and '.join(sorted(scripts))} scripts"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidUsername(
            f"username is not allowed: longer than {MAX_KEY_LENGTH} characters once case-mapped"
        )
    return key


def _enforce(name: str) -> str:
    try:
        return _PROFILE.enforce(name)
    except UnicodeEncodeError as exc:
        raise InvalidUsername(_disallowed_message(name, exc)) from None


def _disallowed_message(name: str, exc: UnicodeEncodeError) -> str:
    # precis_i18n reports the rule as "DISALLOWED/<rule>" in the exception's reason.
    rule = exc.reason.removeprefix("DISALLOWED/")
    if rule == "empty":
        return "username is empty"
    char = name[exc.start] if exc.start < len(name) else ""
    where = f"U+{ord(char):04X} at position {exc.start}" if char else f"position {exc.start}"
    return f"username {name!r} is not allowed: disallowed character {where} ({rule})"


def _letter_scripts(key: str) -> set[str]:
    """The confusable scripts the letters of ``key`` belong to (digits and marks are neutral)."""
    scripts: set[str] = set()
    for char in key:
        if not unicodedata.category(char).startswith("L"):
            continue
        script = unicodedata.name(char, "").split(" ", 1)[0]
        if script in _CONFUSABLE_SCRIPTS:
            scripts.add(script)
    return scripts
