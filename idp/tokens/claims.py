"""Time claims of a JWT (RFC 7519 §4.1.4-4.1.6), checked the same way wherever idp reads
a JWT: client assertions and assertion grants (RFC 7523 §3) and access tokens (RFC 9068
§4). Pure functions over a claims mapping; no idp imports, so ``idp.verify`` can share them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ClaimError(Exception):
    """A claim breaks a rule; ``rule`` names it for metrics, ``description`` for the caller."""

    def __init__(self, rule: str, description: str) -> None:
        super().__init__(description)
        self.rule = rule
        self.description = description


def numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """The claim as a NumericDate (a JSON number, never a boolean), or None when absent."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClaimError(name, f"'{name}' must be a number")
    return float(value)


def check_times(
    claims: Mapping[str, Any],
    now: float,
    leeway: float,
    *,
    max_lifetime: float | None = None,
    require_iat: bool = False,
) -> None:
    """``exp`` required and not past; ``iat`` and ``nbf`` not in the future; with
    ``max_lifetime``, ``exp - iat`` (or ``exp - now`` without ``iat``) within it."""
    expires = numeric_date(claims, "exp")
    if expires is None:
        raise ClaimError("exp", "'exp' is required")
    if expires <= now - leeway:
        raise ClaimError("exp", "has expired")
    issued = numeric_date(claims, "iat")
    if issued is None and require_iat:
        raise ClaimError("iat", "'iat' is required")
    for name, moment in (("iat", issued), ("nbf", numeric_date(claims, "nbf"))):
        if moment is not None and moment > now + leeway:
            raise ClaimError(name, f"'{name}' is in the future")
    if (
        max_lifetime is not None
        and expires - (issued if issued is not None else now) > max_lifetime
    ):
        raise ClaimError("lifetime", f"lifetime exceeds {max_lifetime:g} s")
