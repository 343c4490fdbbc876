"""Signing keys: the on-disk store with its rotation rules and the workers' cached view."""

from idp.keys.ring import KeyRing, LoadedKeys
from idp.keys.store import KeyRecord, KeyStore, PruneResult

__all__ = ["KeyRecord", "KeyRing", "KeyStore", "LoadedKeys", "PruneResult"]
