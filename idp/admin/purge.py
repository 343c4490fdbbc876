"""Housekeeping: delete the rows no request can need any more, in small batches.

What goes, table by table:

* ``refresh_tokens``: a row whose login (its family) has no usable token left, because
  the family expired or was revoked; a revoked row (presenting it is refused exactly as
  presenting an unknown token); and, for logins without an absolute lifetime, a row used
  more than ``IDP_REFRESH_REUSE_DETECTION_DAYS`` ago. A used row of a live family is kept
  otherwise: presenting it again is how a stolen token is detected (reuse revokes the
  family), and that only works while the row exists. A family with an absolute lifetime
  keeps its used rows until it expires; one without would keep them forever, so after the
  window a replayed old token is refused as unknown instead of revoking the family.
* ``replay_entries`` and ``revocations``: rows past their ``expires_at``. Both stores
  ignore such rows already (a jti may be reused once its record expired; an expired
  revocation matches no unexpired token), so deleting them changes no answer.
* ``audit_events``: rows older than ``IDP_AUDIT_RETENTION_DAYS`` (0 keeps them forever).

Safe on a live system: each table is walked in primary-key order and at most
``BATCH_SIZE`` rows are deleted per transaction, so no lock is held for long and a
concurrent token request waits at most for one small batch. Every condition is one a row
can enter but never leave (a dead family never comes back to life), and each DELETE
re-checks it, so a row changed between the read and the delete is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, exists, or_, select
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql import ColumnElement

from idp import audit
from idp.models import AuditEvent, RefreshToken, ReplayEntry, Revocation, db, utcnow
from idp.settings import Settings

BATCH_SIZE = 1000
TABLES = ("refresh_tokens", "replay_entries", "revocations", "audit_events")


@dataclass
class PurgeReport:
    dry_run: bool
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))

    def as_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, **self.counts}


def dead_refresh_tokens(now: datetime, reuse_detection_days: int) -> ColumnElement[bool]:
    """Refresh-token rows that no request can need any more (see the module docstring)."""
    live = aliased(RefreshToken)
    family_has_a_usable_token = exists().where(
        live.family_id == RefreshToken.family_id,
        live.used_at.is_(None),
        live.revoked_at.is_(None),
        or_(live.expires_at.is_(None), live.expires_at > now),
    )
    used_long_ago = and_(
        RefreshToken.expires_at.is_(None),
        RefreshToken.used_at < now - timedelta(days=reuse_detection_days),
    )
    return or_(~family_has_a_usable_token, RefreshToken.revoked_at.is_not(None), used_long_ago)


def purge(
    settings: Settings,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[str, int], None] | None = None,
    actor: audit.Actor | None = None,
) -> PurgeReport:
    """Delete (or with ``dry_run`` only count) the rows described above.

    ``on_batch(table, rows)`` is called after each committed batch (progress, tests).
    """
    now = now or utcnow()
    report = PurgeReport(dry_run)
    targets: list[tuple[str, Any, InstrumentedAttribute[Any], ColumnElement[bool]]] = [
        (
            "refresh_tokens",
            RefreshToken,
            RefreshToken.id,
            dead_refresh_tokens(now, settings.refresh_reuse_detection_days),
        ),
        ("replay_entries", ReplayEntry, ReplayEntry.key, ReplayEntry.expires_at < now),
        ("revocations", Revocation, Revocation.key, Revocation.expires_at < now),
    ]
    if settings.audit_retention_days:
        cutoff = now - timedelta(days=settings.audit_retention_days)
        targets.append(("audit_events", AuditEvent, AuditEvent.id, AuditEvent.at < cutoff))
    for table, model, key, condition in targets:
        report.counts[table] = _purge_table(
            table, model, key, condition, dry_run, batch_size, on_batch
        )
    if not dry_run and any(report.counts.values()):
        # Who removed what stays on record, even when that is audit rows.
        audit.record("purged", actor=actor, deleted=report.counts)
        db.session.commit()
    return report


def _purge_table(
    table: str,
    model: Any,
    key: InstrumentedAttribute[Any],
    condition: ColumnElement[bool],
    dry_run: bool,
    batch_size: int,
    on_batch: Callable[[str, int], None] | None,
) -> int:
    """Walk the table in key order, one short transaction per batch of matching rows."""
    total = 0
    last: Any = None
    while True:
        query = select(key).where(condition).order_by(key).limit(batch_size)
        if last is not None:
            query = query.where(key > last)
        keys = list(db.session.scalars(query))
        if not keys:
            db.session.rollback()  # end the read transaction: no snapshot held between runs
            break
        if dry_run:
            found = len(keys)
        else:
            result = db.session.execute(
                delete(model)
                .where(key.in_(keys), condition)
                .execution_options(synchronize_session=False)
            )
            found = cast(CursorResult[Any], result).rowcount or 0
        db.session.commit()
        total += found
        if on_batch is not None:
            on_batch(table, found)
        last = keys[-1]
        if len(keys) < batch_size:
            break
    return total
