"""Shared state that must hold across workers and instances: the assertion replay cache
and the revocation store, in Redis (production) or the database (embedded)."""

from idp.stores.base import ReplayStore, Revocation, RevocationStore, StoreUnavailable

__all__ = ["ReplayStore", "Revocation", "RevocationStore", "StoreUnavailable"]
