"""Signing keys: the stores with their rotation rules (``idp.keys.store``, and
``idp.keys.database`` for PostgreSQL) and the workers' cached view (``idp.keys.ring``).

Only the store's names are here: importing the package stays as light as reading a key
folder (``idp keys list``), without the ring's SQLAlchemy and logging set-up.
"""

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
    "KeyStore",
    "PruneResult",
    "RotationResult",
]
