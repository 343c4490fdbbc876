"""Redis implementations: one round trip on the hot path, expiry handled by Redis itself."""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis
from redis.connection import Connection

from idp.stores.base import Revocation, SessionLike, StoreUnavailable
from idp.stores.database_store import DatabaseRevocationStore

REPLAY_PREFIX = "idp:replay:"
REVOKED_PREFIX = "idp:revoked:"

# SET that keeps the later revocation time and the later expiry of the stored value and the
# new one, as the database's upsert does: two workers may finish their writes in either
# order, and a refill may write what it read before a newer revocation. KEYS[1] the key,
# ARGV[1] revoked_at_ms, ARGV[2] expires_at in Unix seconds.
KEEP_LATER = """
local stored = redis.call('GET', KEYS[1])
if not stored then
    return redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
end
local value = ARGV[1]
if tonumber(stored) > tonumber(ARGV[1]) then
    value = stored
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if redis.call('PTTL', KEYS[1]) > tonumber(ARGV[2]) * 1000 - now_ms then
    return redis.call('SET', KEYS[1], value, 'KEEPTTL')
end
return redis.call('SET', KEYS[1], value, 'EXAT', ARGV[2])
"""


def _ping(client: redis.Redis) -> None:
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc


class RedisReplayStore:
    """``SET NX EXAT``: atomic across every worker and instance that shares the Redis.

    The claim is on the token endpoint's hot path. It keeps the connections it has taken
    from the client's pool and sends its one command on them directly: redis-py's
    per-command path (pool checkout with a socket poll, retry wrapper, command parsing)
    cost about three times the round trip itself. A connection belongs to one claim at
    a time: ``list.pop``/``append`` are atomic for threads and never switch greenlets.
    """

    backend = "redis"

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._idle: list[Connection] = []

    def ping(self) -> None:
        _ping(self.client)

    def claim(self, key: str, expires_at: int) -> bool:
        return self.begin_claim(key, expires_at).result()

    def begin_claim(self, key: str, expires_at: int) -> _RedisClaim:
        # EXAT must lie in the future or Redis rejects the SET; a past expiry is already stale.
        expires_at = max(expires_at, int(time.time()) + 1)
        connection = self._idle.pop() if self._idle else self._new_connection()
        command = connection.pack_command(
            "SET", REPLAY_PREFIX + key, b"1", "NX", "EXAT", expires_at
        )
        claim = _RedisClaim(self._idle, connection, command)
        claim.send()
        return claim

    def _new_connection(self) -> Connection:
        try:
            return self.client.connection_pool.get_connection()
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc


class _RedisClaim:
    """One ``SET NX`` in flight on a connection the claim holds until it is answered or
    discarded; the connection then goes back to the store's idle list."""

    def __init__(self, idle: list[Connection], connection: Connection, command: list[bytes]):
        self.idle = idle
        self.connection: Connection | None = connection
        self.command = command
        self.retried = False

    def send(self) -> None:
        self._guarded(reading=False)

    def result(self) -> bool:
        fresh = self._guarded(reading=True)
        self._release()
        return fresh

    def discard(self) -> None:
        if self.connection is not None:
            self.connection.disconnect()  # the reply must never be read by another claim
            self._release()

    def _guarded(self, reading: bool) -> bool:
        connection = self.connection
        assert connection is not None, "a claim is answered or discarded once"
        try:
            try:
                return self._step(connection, reading)
            except redis.ConnectionError:
                if self.retried:
                    raise
                # A connection Redis closed (a restart, an idle timeout): once more on a
                # fresh one. Should the first SET have landed, the retry finds the key and
                # refuses the assertion: never the reverse.
                self.retried = True
                connection.disconnect()
                connection.send_packed_command(self.command, check_health=False)
                return self._step(connection, reading) if reading else True
        except BaseException as exc:
            # A reply may still be on its way (a timeout, a killed greenlet): close the
            # socket so that no later claim on this connection reads it.
            self.discard()
            if isinstance(exc, redis.RedisError):
                raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
            raise

    def _step(self, connection: Connection, reading: bool) -> bool:
        if reading:
            return connection.read_response() is not None
        connection.send_packed_command(self.command, check_health=False)
        return True

    def _release(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            self.idle.append(connection)


class RedisRevocationStore:
    """Revocations written to the database (the source of truth) and to Redis (the fast
    path read on every request).

    ``LOADED`` marks a Redis that holds every live revocation. A Redis restarted without
    persistence comes back without it; the next reader then refills Redis from the
    database, so a restart forgets no revocation.
    """

    LOADED = REVOKED_PREFIX + "(loaded)"
    # The database behind the fast path is readiness's own "database" check.
    backend = "redis"

    def __init__(self, client: redis.Redis, database: DatabaseRevocationStore) -> None:
        self.client = client
        self.database = database

    def ping(self) -> None:
        _ping(self.client)

    def revoke(self, session: SessionLike, revocations: Sequence[Revocation]) -> None:
        self.database.revoke(session, revocations)
        try:
            self._write(revocations, loaded=False)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc

    def latest_revocation(self, keys: Sequence[str]) -> int | None:
        try:
            loaded, *found = self.client.mget([self.LOADED, *(REVOKED_PREFIX + k for k in keys)])
            if loaded is None:
                return self._refill(keys)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
        times = [int(value) for value in found if value is not None]
        return max(times, default=None)

    def _refill(self, keys: Sequence[str]) -> int | None:
        live = self.database.live_revocations()
        self._write(live, loaded=True)
        wanted = set(keys)
        return max((r.revoked_at_ms for r in live if r.key in wanted), default=None)

    def _write(self, revocations: Sequence[Revocation], loaded: bool) -> None:
        """One round trip; MULTI/EXEC, so the marker is never set without the data."""
        now = int(time.time())
        pipe = self.client.pipeline(transaction=True)
        for revocation in revocations:
            if revocation.expires_at > now:
                key = REVOKED_PREFIX + revocation.key
                pipe.eval(KEEP_LATER, 1, key, revocation.revoked_at_ms, revocation.expires_at)
        if loaded:
            pipe.set(self.LOADED, b"1")
        pipe.execute()
