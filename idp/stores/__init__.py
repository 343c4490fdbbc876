"""Shared state that must hold across workers and instances: the assertion replay cache
and the access-token revocation list, in Redis (production) or the database (embedded)."""

from idp.stores.base import ReplayStore, RevocationList, StoreUnavailable

__all__ = ["ReplayStore", "RevocationList", "StoreUnavailable"]
