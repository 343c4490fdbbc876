"""``idp audit`` and ``idp purge``: the audit trail read, and dead rows removed."""

from __future__ import annotations

import click
from flask.cli import AppGroup, with_appcontext

from idp.cli.output import emit, json_option, operator
from idp.models import utcnow
from idp.runtime import runtime

# -- audit ------------------------------------------------------------------------

audit = AppGroup("audit", help="Read the audit trail.")


@audit.command("list")
@click.option(
    "--since",
    metavar="DURATION|TIME",
    help="Only events this recent (90d, 12h, 30m, 3600s) or from this RFC 3339 time on.",
)
@click.option("--user", "user_id", metavar="ID", help="Only events about this user id.")
@click.option("--limit", default="100", show_default=True, metavar="N", help="At most N events.")
@json_option
def audit_list(since: str | None, user_id: str | None, limit: str, as_json: bool) -> None:
    """Audit events, newest first."""
    from idp.admin import audit as audit_admin

    moment = audit_admin.parse_since(since, utcnow()) if since is not None else None
    events = audit_admin.list_events(moment, user_id, audit_admin.parse_limit(limit))
    emit([audit_admin.event_record(e) for e in events], as_json)


# -- purge ------------------------------------------------------------------------


@click.command("purge")
@with_appcontext
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@json_option
def purge_command(dry_run: bool, as_json: bool) -> None:
    """Delete dead refresh tokens, expired replay and revocation rows, and audit events older
    than IDP_AUDIT_RETENTION_DAYS, in small batches (safe on a live system, e.g. from cron)."""
    from idp.admin.purge import purge

    report = purge(runtime().settings, dry_run=dry_run, actor=operator())
    emit(report.as_json(), as_json)
