"""Audit events: a database row and a structured log line, never a secret."""

from __future__ import annotations

import json
import logging
from typing import Any

from idp.models import AuditEvent, db

logger = logging.getLogger("idp.audit")


def record(
    event: str,
    *,
    tenant: str | None = None,
    client_id: str | None = None,
    user_id: str | None = None,
    **detail: Any,
) -> None:
    """Add the event to the current session; the caller's commit makes it durable."""
    db.session.add(
        AuditEvent(event=event, tenant=tenant, client_id=client_id, user_id=user_id, detail=detail)
    )
    line = {"event": event, "tenant": tenant, "client_id": client_id, "user_id": user_id, **detail}
    logger.info(json.dumps({k: v for k, v in line.items() if v is not None}, default=str))
