"""Audit events: a database row and a structured log line, never a secret."""

from __future__ import annotations

import json
import logging
from typing import Any

from idp.models import AuditEvent, db
from idp.observability.logs import request_id

logger = logging.getLogger("idp.audit")


def record(
    event: str,
    *,
    tenant: str | None = None,
    client_id: str | None = None,
    user_id: str | None = None,
    **detail: Any,
) -> None:
    """Add the event to the current session; the caller's commit makes it durable.

    Inside a request the event carries its X-Request-ID (the log line has it already,
    from the log format); events of CLI commands have none.
    """
    db.session.add(
        AuditEvent(
            event=event,
            tenant=tenant,
            client_id=client_id,
            user_id=user_id,
            detail=detail,
            request_id=request_id(),
        )
    )
    line = {"event": event, "tenant": tenant, "client_id": client_id, "user_id": user_id, **detail}
    logger.info(json.dumps({k: v for k, v in line.items() if v is not None}, default=str))
