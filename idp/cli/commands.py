"""The ``idp`` commands that work on the database: init and serve, tenants, clients,
issuers, users, audit and purge. Loaded by ``idp.cli`` when the command line names one."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from idp.admin import clients as client_admin
from idp.admin import issuers as issuer_admin
from idp.admin import tenants as tenant_admin
from idp.cli.output import describe_fields, emit, json_option
from idp.errors import IdpError
from idp.models import DEFAULT_TENANT, User, db, utcnow
from idp.registry import AUTH_METHODS, GRANT_TYPES
from idp.runtime import runtime
from idp.settings import is_configured, load_settings
from idp.users.records import user_record
from idp.users.service import (
    create_user,
    delete_user,
    find_user_in_any_tenant,
    list_users,
    revoke_sessions,
    set_lock,
    set_password,
)

# -- init / serve ------------------------------------------------------------------


def _prepare_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            return  # the operator's folder: its modes are theirs
        # A folder idp creates holds the database: owner only, whatever the umask.
        folder.chmod(0o700)


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@click.command("init")
@with_appcontext
@json_option
def init_command(as_json: bool) -> None:
    """Create or migrate the schema, the default tenant and the first keys."""
    from flask import current_app
    from flask_migrate import upgrade

    from idp.app import MIGRATIONS_DIR, init_migrations

    rt = runtime()
    url = rt.settings.database_url
    _prepare_sqlite_dir(url)
    try:
        with db.engine.connect():
            pass
    except SQLAlchemyError as exc:
        reason = str(exc.orig if hasattr(exc, "orig") else exc).strip().splitlines()[0]
        raise IdpError(f"cannot reach database {_safe_url(url)}: {reason}") from None
    init_migrations(current_app)
    upgrade(directory=str(MIGRATIONS_DIR))
    tenant_admin.ensure_tenant(DEFAULT_TENANT)
    db.session.commit()
    records = rt.key_store.initialise(rt.settings.signing_alg)
    summary = {
        "database": _safe_url(url),
        "keys_dir": rt.key_store.location,
        "tenant": DEFAULT_TENANT,
        "keys": [r.as_json() for r in records],
    }
    emit(summary, as_json, lambda s: f"idp initialised: {s['database']}, keys in {s['keys_dir']}")


def _served_issuer(host: str, port: int) -> str:
    """``http://host:port``; a wildcard address is reached on loopback, and an IPv6
    address is bracketed (RFC 3986 §3.2.2)."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 -- compared, not bound
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="gunicorn gevent worker processes; at least one per CPU core",
)
def serve_command(host: str, port: int, workers: int) -> None:
    """Serve the app with gunicorn (gevent workers: a slow client holds a greenlet, not a
    worker; settings in idp.observability.gunicorn_conf)."""
    load_settings()  # a bad setting stops here with one line, not in every worker
    if not is_configured("issuer"):
        # The workers advertise the address they are served on, so tokens, metadata and
        # the audiences of assertions all name the URL clients actually call.
        os.environ["IDP_ISSUER"] = _served_issuer(host, port)
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Workers share metrics through files; a fresh folder per server start.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="idp-metrics-")
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:idp.observability.gunicorn_conf",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "idp.wsgi:app",
    ]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # noqa: S606 -- fixed argv, no shell


# -- tenants ----------------------------------------------------------------------

tenants = AppGroup("tenants", help="Manage tenants.")


def _tenant_record(tenant: Any) -> dict[str, Any]:
    return {"name": tenant.name, "created_at": tenant.created_at.isoformat(timespec="seconds")}


@tenants.command("create")
@click.argument("name")
@json_option
def tenants_create(name: str, as_json: bool) -> None:
    tenant = tenant_admin.create_tenant(name)
    db.session.commit()
    emit(_tenant_record(tenant), as_json, describe_fields)


@tenants.command("list")
@json_option
def tenants_list(as_json: bool) -> None:
    emit([_tenant_record(t) for t in tenant_admin.list_tenants()], as_json, describe_fields)


# -- clients ----------------------------------------------------------------------

clients = AppGroup("clients", help="Manage OAuth clients.")


def _read_jwks_file(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise IdpError(f"cannot read JWKS file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise IdpError(f"JWKS file {path} is not valid JSON: {exc}") from None


def _describe_client(record: dict[str, Any]) -> str:
    shown = {k: v for k, v in record.items() if k != "jwks"}
    return describe_fields(shown)


@clients.command("create")
@click.option("--name", required=True)
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True)
@click.option(
    "--auth-method",
    required=True,
    type=click.Choice(AUTH_METHODS),
)
@click.option("--jwks-file", type=click.Path(dir_okay=False))
@click.option("--jwks-uri")
@click.option(
    "--grant-types",
    default="client_credentials",
    show_default=True,
    help=f"Comma-separated, among {', '.join(GRANT_TYPES)}.",
)
@click.option("--scope", default="", help="Space-separated scopes the client may ask for.")
@click.option("--access-token-ttl", type=int)
@click.option("--refresh-token-ttl", type=int)
@click.option(
    "--refresh-reuse-grace",
    type=int,
    help="Seconds a used refresh token may be presented again as a retry (default: setting).",
)
@json_option
def clients_create(
    name: str,
    tenant: str,
    auth_method: str,
    jwks_file: str | None,
    jwks_uri: str | None,
    grant_types: str,
    scope: str,
    access_token_ttl: int | None,
    refresh_token_ttl: int | None,
    refresh_reuse_grace: int | None,
    as_json: bool,
) -> None:
    """Register a client; a generated client_secret is shown once."""
    spec = client_admin.ClientSpec(
        name=name,
        tenant=tenant,
        auth_method=auth_method,
        grant_types=[g.strip() for g in grant_types.split(",") if g.strip()],
        scope=scope,
        jwks=_read_jwks_file(jwks_file),
        jwks_uri=jwks_uri,
        access_token_ttl=access_token_ttl,
        refresh_token_ttl=refresh_token_ttl,
        refresh_reuse_grace=refresh_reuse_grace,
    )
    client, secret = client_admin.create_client(spec, runtime().settings.insecure_jwks_uri)
    db.session.commit()
    record = client_admin.client_record(client)
    if secret:
        record["client_secret"] = secret
    emit(record, as_json, _describe_client)


@clients.command("list")
@json_option
def clients_list(as_json: bool) -> None:
    records = [client_admin.client_record(c) for c in client_admin.list_clients()]
    emit(records, as_json, _describe_client)


@clients.command("show")
@click.argument("client_id")
@json_option
def clients_show(client_id: str, as_json: bool) -> None:
    emit(client_admin.client_record(client_admin.get_client(client_id)), as_json, _describe_client)


@clients.command("delete")
@click.argument("client_id")
@json_option
def clients_delete(client_id: str, as_json: bool) -> None:
    client = client_admin.delete_client(client_id, runtime().revoker)
    db.session.commit()
    emit({"client_id": client.id, "deleted": True}, as_json, describe_fields)


@clients.command("rotate-secret")
@click.argument("client_id")
@json_option
def clients_rotate_secret(client_id: str, as_json: bool) -> None:
    """Replace the client's secret; the new one is shown once and the old stops working."""
    client, secret = client_admin.rotate_client_secret(client_id)
    db.session.commit()
    emit({"client_id": client.id, "client_secret": secret}, as_json, describe_fields)


# -- issuers ----------------------------------------------------------------------

issuers = AppGroup("issuers", help="Manage trusted assertion issuers (jwt-bearer grant).")


def _describe_issuer(record: dict[str, Any]) -> str:
    keys = record["jwks_uri"] or "registered JWKS"
    return f"{record['tenant']}  {record['issuer']}  provision={record['provision']}  {keys}"


@issuers.command("add")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True)
@click.option("--issuer", required=True, help="The 'iss' of the assertions.")
@click.option("--jwks-file", type=click.Path(dir_okay=False))
@click.option("--jwks-uri")
@click.option("--provision", is_flag=True, help="Create a user for an unknown subject.")
@click.option("--scope", default=None, help="Most a token from its assertions may carry.")
@json_option
def issuers_add(
    tenant: str,
    issuer: str,
    jwks_file: str | None,
    jwks_uri: str | None,
    provision: bool,
    scope: str | None,
    as_json: bool,
) -> None:
    spec = issuer_admin.IssuerSpec(
        tenant=tenant,
        issuer=issuer,
        jwks=_read_jwks_file(jwks_file),
        jwks_uri=jwks_uri,
        provision=provision,
        scope=scope,
    )
    row = issuer_admin.add_issuer(spec, runtime().settings.insecure_jwks_uri)
    db.session.commit()
    emit(issuer_admin.issuer_record(row), as_json, _describe_issuer)


@issuers.command("list")
@click.option("--tenant", default=None, help="Only this tenant's issuers.")
@json_option
def issuers_list(tenant: str | None, as_json: bool) -> None:
    rows = issuer_admin.list_issuers(tenant)
    emit([issuer_admin.issuer_record(row) for row in rows], as_json, _describe_issuer)


@issuers.command("remove")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True)
@click.option("--issuer", required=True)
@json_option
def issuers_remove(tenant: str, issuer: str, as_json: bool) -> None:
    record = issuer_admin.issuer_record(issuer_admin.remove_issuer(tenant, issuer))
    db.session.commit()
    emit(record, as_json, _describe_issuer)


# -- users ------------------------------------------------------------------------

users = AppGroup("users", help="Manage users.")

# The operator acts outside any client: audit events carry no client_id, as for create.
OPERATOR = None


def _read_password(password_stdin: bool) -> str | None:
    if not password_stdin:
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise IdpError("--password-stdin given but standard input held no password")
    return password


def _user_by_id(user_id: str) -> User:
    """A live user by id, in whichever tenant it lives: the operator sees every tenant."""
    user = find_user_in_any_tenant(user_id)
    if user is None:
        raise IdpError(f"no user with id {user_id!r}")
    return user


def _emit_user(user: User, as_json: bool) -> None:
    emit(user_record(user), as_json, describe_fields)


@users.command("create")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True)
@click.option("--username", required=True)
@click.option("--email")
@click.option("--scope", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
def users_create(
    tenant: str, username: str, email: str | None, scope: str, password_stdin: bool, as_json: bool
) -> None:
    password = _read_password(password_stdin)
    user = create_user(tenant, username, password, email, scope)
    db.session.commit()
    _emit_user(user, as_json)


@users.command("list")
@click.option("--tenant", help="Only this tenant's users (default: every tenant).")
@click.option("--username", help="Match the username as sign-in does (case, width).")
@json_option
def users_list(tenant: str | None, username: str | None, as_json: bool) -> None:
    tenant_id = tenant_admin.require_tenant(tenant).id if tenant is not None else None
    filters = {"username": username} if username is not None else {}
    found, _total = list_users(tenant_id, filters, limit=None, offset=0)
    emit([user_record(u) for u in found], as_json, describe_fields)


@users.command("show")
@click.argument("user_id")
@json_option
def users_show(user_id: str, as_json: bool) -> None:
    _emit_user(_user_by_id(user_id), as_json)


@users.command("lock")
@click.argument("user_id")
@json_option
def users_lock(user_id: str, as_json: bool) -> None:
    """Lock the user: sign-in refused and its access tokens dead until unlocked."""
    _set_lock(user_id, True, as_json)


@users.command("unlock")
@click.argument("user_id")
@json_option
def users_unlock(user_id: str, as_json: bool) -> None:
    """Unlock the user and reset its bad-attempt counter."""
    _set_lock(user_id, False, as_json)


def _set_lock(user_id: str, locked: bool, as_json: bool) -> None:
    user = _user_by_id(user_id)
    set_lock(user, locked, OPERATOR, runtime().revoker)
    db.session.commit()
    _emit_user(user, as_json)


@users.command("delete")
@click.argument("user_id")
@json_option
def users_delete(user_id: str, as_json: bool) -> None:
    """Soft-delete the user and revoke all its tokens; prints the record with deletedAt."""
    user = _user_by_id(user_id)
    delete_user(user, OPERATOR, runtime().revoker)
    db.session.commit()
    _emit_user(user, as_json)


@users.command("revoke-tokens")
@click.argument("user_id")
@json_option
def users_revoke_tokens(user_id: str, as_json: bool) -> None:
    """Revoke every refresh token of the user and every access token issued so far."""
    revoked = revoke_sessions(_user_by_id(user_id), OPERATOR, runtime().revoker)
    db.session.commit()
    emit({"revoked": revoked}, as_json, describe_fields)


@users.command("reset-password")
@click.argument("user_id")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@json_option
def users_reset_password(user_id: str, password_stdin: bool, as_json: bool) -> None:
    """Set a new password (read from standard input) and end the user's sessions."""
    password = _read_password(password_stdin)
    if password is None:
        raise IdpError("the new password is read from standard input: pass --password-stdin")
    user = _user_by_id(user_id)
    set_password(user, password, OPERATOR, "password_reset", runtime().revoker)
    db.session.commit()
    _emit_user(user, as_json)


# -- audit ------------------------------------------------------------------------

audit = AppGroup("audit", help="Read the audit trail.")


def _describe_event(record: dict[str, Any]) -> str:
    fields = {k: record[k] for k in ("tenant", "client_id", "user_id", "request_id")}
    detail = json.dumps(record["detail"], sort_keys=True) if record["detail"] else ""
    return f"{record['at']}  {record['event']}  {describe_fields(fields)}  {detail}".rstrip()


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
    emit([audit_admin.event_record(e) for e in events], as_json, _describe_event)


# -- purge ------------------------------------------------------------------------


def _describe_purge(report: dict[str, Any]) -> str:
    verb = "would delete" if report["dry_run"] else "deleted"
    counts = ", ".join(f"{table} {report[table]}" for table in report if table != "dry_run")
    return f"{verb}: {counts}"


@click.command("purge")
@with_appcontext
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@json_option
def purge_command(dry_run: bool, as_json: bool) -> None:
    """Delete dead refresh tokens, expired replay and revocation rows, and audit events older
    than IDP_AUDIT_RETENTION_DAYS, in small batches (safe on a live system, e.g. from cron)."""
    from idp.admin.purge import purge

    report = purge(runtime().settings, dry_run=dry_run)
    emit(report.as_json(), as_json, _describe_purge)
