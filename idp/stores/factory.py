"""The stores of one application, chosen by the scheme of the Redis URL: Redis when one is
configured, the database tables otherwise."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy.engine import Engine

from idp.errors import ConfigurationError
from idp.stores.base import ReplayStore, RevocationStore
from idp.stores.database_store import DatabaseReplayStore, DatabaseRevocationStore

if TYPE_CHECKING:
    import redis

# A request waits at most this long for Redis before it fails closed with a 503.
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Stores:
    replay: ReplayStore
    revocations: RevocationStore
    # The client behind the Redis stores, for the caller to flush or close; None without one.
    redis: redis.Redis | None = None


StoresBuilder = Callable[[str, Engine], Stores]


def _redis_stores(url: str, engine: Engine) -> Stores:
    # Imported only when Redis is configured: redis-py takes about a quarter of a second
    # to import, which the embedded profile and most idp commands never need.
    import redis

    from idp.stores.redis_store import RedisReplayStore, RedisRevocationStore

    client = redis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )
    # Revocations are written through to the database, the source of truth.
    revocations = RedisRevocationStore(client, DatabaseRevocationStore(engine))
    return Stores(replay=RedisReplayStore(client), revocations=revocations, redis=client)


def _database_stores(engine: Engine) -> Stores:
    return Stores(replay=DatabaseReplayStore(engine), revocations=DatabaseRevocationStore(engine))


# The schemes redis-py's from_url understands: TCP, TLS (rediss) and a Unix socket.
BUILDERS: Mapping[str, StoresBuilder] = {
    "redis": _redis_stores,
    "rediss": _redis_stores,
    "unix": _redis_stores,
}


def build_stores(redis_url: str | None, engine: Engine) -> Stores:
    """The replay cache and revocation store for ``redis_url``, or the database's when unset."""
    if not redis_url:
        return _database_stores(engine)
    scheme = urlsplit(redis_url).scheme
    builder = BUILDERS.get(scheme)
    if builder is None:
        # The URL itself may carry a password: name the scheme only.
        raise ConfigurationError(
            f"IDP_REDIS_URL has the unsupported scheme {scheme + '://'!r}; "
            f"use one of {', '.join(s + '://' for s in BUILDERS)}"
        )
    return builder(redis_url, engine)
