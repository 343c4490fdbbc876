"""Signing keys: the stores with their rotation rules and the workers' cached view."""

from idp.keys.ring import KeyRing, LoadedKeys
from idp.keys.store import (
    BaseKeyStore,
    FileKeyStore,
    KeyRecord,
    KeyStore,
    PruneResult,
    RotationResult,
)

__all__ = [
    "BaseKeyStore",
    "FileKeyStore",
    "KeyRecord",
    "KeyRing",
    "KeyStore",
    "LoadedKeys",
    "PruneResult",
    "RotationResult",
]
