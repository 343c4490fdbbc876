"""Redis implementations: one round trip each, expiry handled by Redis itself."""

from __future__ import annotations

import time

import redis

from idp.stores.base import StoreUnavailable

REPLAY_PREFIX = "idp:replay:"
REVOKED_PREFIX = "idp:revoked-at:"


class RedisReplayStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def claim(self, key: str, expires_at: int) -> bool:
        # EXAT must lie in the future or Redis rejects the SET; a past expiry is already stale.
        expires_at = max(expires_at, int(time.time()) + 1)
        try:
            return bool(self.client.set(REPLAY_PREFIX + key, b"1", nx=True, exat=expires_at))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc


class RedisRevocationList:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def revoke(self, jti: str, expires_at: int) -> None:
        if expires_at <= time.time():
            return
        try:
            self.client.set(REVOKED_PREFIX + jti, b"1", exat=expires_at)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc

    def is_revoked(self, jti: str) -> bool:
        try:
            return bool(self.client.exists(REVOKED_PREFIX + jti))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
