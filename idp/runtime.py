"""Per-application services built once by the app factory and reached through ``runtime()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app
from sqlalchemy.engine import Engine

from idp.keys import BaseKeyStore
from idp.keys.factory import build_key_store
from idp.keys.ring import KeyRing
from idp.keys.server_secrets import ServerSecrets
from idp.registrations.cache import ClientRegistry
from idp.settings import Settings
from idp.stores import ReplayStore, RevocationStore
from idp.stores.factory import build_stores
from idp.tokens.lifetimes import Lifetimes
from idp.tokens.revocations import Revoker
from idp.verify import LocalJwks, TokenVerifier

if TYPE_CHECKING:
    import redis  # only with IDP_REDIS_URL set, by the store factory

EXTENSION_KEY = "idp"


@dataclass
class Runtime:
    settings: Settings
    key_store: BaseKeyStore
    key_ring: KeyRing
    redis: redis.Redis | None
    replay_store: ReplayStore
    revocation_store: RevocationStore
    verifier: TokenVerifier
    lifetimes: Lifetimes
    revoker: Revoker
    clients: ClientRegistry
    server_secrets: ServerSecrets


def build_runtime(settings: Settings, engine: Engine) -> Runtime:
    store = build_key_store(settings, engine)
    stores = build_stores(settings.redis_url, engine)
    key_ring = KeyRing(store)
    lifetimes = Lifetimes(settings)

    def published_jwks() -> tuple[str, bytes]:
        keys = key_ring.current()
        return keys.etag, keys.jwks_body

    # The users API verifies tokens exactly as an external resource server would.
    verifier = TokenVerifier(
        issuer=settings.issuer,
        audience=settings.issuer,
        jwks=LocalJwks(published_jwks),
        revocations=stores.revocations,
        leeway=settings.clock_skew,
    )
    return Runtime(
        settings=settings,
        key_store=store,
        key_ring=key_ring,
        redis=stores.redis,
        replay_store=stores.replay,
        revocation_store=stores.revocations,
        verifier=verifier,
        lifetimes=lifetimes,
        revoker=Revoker(stores.revocations, lifetimes),
        clients=ClientRegistry(engine),
        server_secrets=ServerSecrets(engine),
    )


def runtime(app: Flask | None = None) -> Runtime:
    return (app or current_app).extensions[EXTENSION_KEY]
