"""Durations as operators write them for schedules: ``90d``, ``12h``, ``30m``, ``3600s``."""

from __future__ import annotations

import re

from idp.errors import IdpError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN = re.compile(r"(\d{1,9})([smhdw]?)")


def parse_duration(text: str, what: str = "duration") -> int:
    """Seconds in ``text``: a whole number with an optional unit (s, m, h, d, w; none = s)."""
    match = _PATTERN.fullmatch(text.strip().lower())
    if match is None:
        raise IdpError(
            f"{what} must be a whole number with a unit s, m, h, d or w "
            f"(e.g. 90d, 12h, 30m, 3600s); got {text!r}"
        )
    return int(match.group(1)) * UNITS[match.group(2) or "s"]


def format_duration(seconds: int) -> str:
    """The largest unit that divides ``seconds`` exactly: 7776000 → ``90d``."""
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"
