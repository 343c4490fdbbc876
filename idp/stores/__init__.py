"""State every worker and instance must agree on, the client-assertion replay cache and the
revocation list, kept in Redis or the database behind one contract: a claim succeeds once, a
revocation is never forgotten before it expires, and an unreachable backend raises
StoreUnavailable so that callers fail closed."""

from idp.stores.base import (
    PendingClaim,
    ReplayStore,
    Revocation,
    RevocationStore,
    StoreUnavailable,
)

__all__ = ["PendingClaim", "ReplayStore", "Revocation", "RevocationStore", "StoreUnavailable"]
