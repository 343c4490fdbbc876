"""The key store a deployment chose with IDP_KEY_STORE."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from idp.errors import ConfigurationError
from idp.keys.store import BaseKeyStore, FileKeyStore
from idp.settings import KEK_FORMAT, Settings, parse_kek


def build_key_store(settings: Settings, engine: Engine) -> BaseKeyStore:
    if settings.key_store == "file":
        return FileKeyStore(settings.keys_dir)
    from idp.keys.database import DatabaseKeyStore
    from idp.keys.sealing import KeySealer

    if settings.keys_encryption_key is None:
        # load_settings refuses this already; settings built in code arrive here.
        raise ConfigurationError(
            f"IDP_KEY_STORE=database needs IDP_KEYS_ENCRYPTION_KEY: {KEK_FORMAT}"
        )
    kek = parse_kek("IDP_KEYS_ENCRYPTION_KEY", settings.keys_encryption_key)
    return DatabaseKeyStore(engine, KeySealer(kek))
