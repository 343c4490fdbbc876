"""Per-application services built once by the app factory and reached through ``runtime()``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask, current_app

from idp.keys import KeyRing, KeyStore
from idp.settings import Settings

EXTENSION_KEY = "idp"
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass
class Runtime:
    settings: Settings
    key_store: KeyStore
    key_ring: KeyRing
    redis: redis.Redis | None


def build_runtime(settings: Settings) -> Runtime:
    store = KeyStore(settings.keys_dir)
    client = None
    if settings.redis_url:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
    return Runtime(settings=settings, key_store=store, key_ring=KeyRing(store), redis=client)


def runtime(app: Flask | None = None) -> Runtime:
    return (app or current_app).extensions[EXTENSION_KEY]
