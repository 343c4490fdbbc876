from __future__ import annotations

from typing import Protocol


class StoreUnavailable(Exception):
    """The store could not be reached; callers fail closed."""


class ReplayStore(Protocol):
    def claim(self, key: str, expires_at: int) -> bool:
        """Record ``key`` until the Unix time ``expires_at``; False if it was already there."""
        ...


class RevocationList(Protocol):
    def revoke(self, jti: str, expires_at: int) -> None:
        """Deny the access token ``jti`` until its own expiry (Unix time)."""
        ...

    def is_revoked(self, jti: str) -> bool: ...
