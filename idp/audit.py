"""Audit events: a database row and a structured log line, never a secret."""

from __future__ import annotations

import getpass
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from idp.models import AuditEvent, db
from idp.observability.logs import request_id

logger = logging.getLogger("idp.audit")


@dataclass(frozen=True)
class CliOperator:
    """A person running ``idp`` commands. No token names them, so the event names the
    operating-system account the command ran under."""

    os_user: str

    @classmethod
    def current(cls) -> CliOperator:
        try:
            return cls(getpass.getuser())
        except OSError:
            # A container's arbitrary uid has no name in the password database.
            return cls(f"uid {os.getuid()}")

    def detail(self) -> dict[str, str]:
        return {"actor": "cli", "os_user": self.os_user}


# Who made a change: the id of the client whose token made it (through the API), or the
# operator at the command line.
Actor = str | CliOperator


def record(
    event: str,
    *,
    tenant: str | None = None,
    client_id: str | None = None,
    user_id: str | None = None,
    actor: Actor | None = None,
    **detail: Any,
) -> None:
    """Add the event to the current session; the caller's commit makes it durable.

    ``actor`` names who made the change: a client id is the event's ``client_id``, the
    CLI's operator goes into ``detail`` (``actor``, ``os_user``). Inside a request the
    event carries its X-Request-ID (the log line has it already, from the log format);
    events of CLI commands have none.
    """
    if isinstance(actor, CliOperator):
        detail = actor.detail() | detail
    elif actor is not None:
        client_id = client_id or actor
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
