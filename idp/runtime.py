"""Per-application services built once by the app factory and reached through ``runtime()``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask, current_app
from sqlalchemy.engine import Engine

from idp.keys import KeyRing, KeyStore
from idp.settings import Settings
from idp.stores import ReplayStore, RevocationStore
from idp.stores.database_store import DatabaseReplayStore, DatabaseRevocationStore
from idp.stores.redis_store import RedisReplayStore, RedisRevocationStore
from idp.verify import LocalJwks, TokenVerifier

EXTENSION_KEY = "idp"
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass
class Runtime:
    settings: Settings
    key_store: KeyStore
    key_ring: KeyRing
    redis: redis.Redis | None
    replay_store: ReplayStore
    revocation_store: RevocationStore
    verifier: TokenVerifier


def build_runtime(settings: Settings, engine: Engine) -> Runtime:
    store = KeyStore(settings.keys_dir)
    client = None
    if settings.redis_url:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
    replay_store: ReplayStore
    revocation_store: RevocationStore
    durable_revocations = DatabaseRevocationStore(engine)
    if client is not None:
        replay_store = RedisReplayStore(client)
        revocation_store = RedisRevocationStore(client, durable_revocations)
    else:
        replay_store, revocation_store = DatabaseReplayStore(engine), durable_revocations
    key_ring = KeyRing(store)

    def published_jwks() -> tuple[str, bytes]:
        keys = key_ring.current()
        return keys.etag, keys.jwks_body

    # The users API verifies tokens exactly as an external resource server would.
    verifier = TokenVerifier(
        issuer=settings.issuer,
        audience=settings.issuer,
        jwks=LocalJwks(published_jwks),
        revocations=revocation_store,
        leeway=settings.clock_skew,
    )
    return Runtime(
        settings=settings,
        key_store=store,
        key_ring=key_ring,
        redis=client,
        replay_store=replay_store,
        revocation_store=revocation_store,
        verifier=verifier,
    )


def runtime(app: Flask | None = None) -> Runtime:
    return (app or current_app).extensions[EXTENSION_KEY]
