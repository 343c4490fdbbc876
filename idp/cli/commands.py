"""The ``idp`` commands that work on the database: init and serve, tenants, clients,
issuers, users, audit and purge. Loaded by ``idp.cli`` when the command line names one."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from idp.admin import clients as client_admin
from idp.admin import issuers as issuer_admin
from idp.admin import tenants as tenant_admin
from idp.audit import CliOperator
from idp.audit import record as audit_record
from idp.cli.output import emit, json_option
from idp.errors import IdpError
from idp.models import DEFAULT_TENANT, User, db, utcnow
from idp.registry import AUTH_METHODS, GRANT_TYPES
from idp.runtime import runtime
from idp.serving import servers
from idp.settings import is_configured, load_settings
from idp.users.records import user_record
from idp.users.service import (
    create_user,
    delete_user,
    find_user_in_any_tenant,
    find_users_by_username,
    list_page,
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
    """Create or migrate the schema, the default tenant and the first keys (idempotent)."""
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
    tenant_admin.ensure_tenant(DEFAULT_TENANT, _operator())
    db.session.commit()
    before = {r.kid for r in rt.key_store.records()}
    records = rt.key_store.initialise(rt.settings.signing_alg)
    created = [r.kid for r in records if r.kid not in before]
    if created:
        audit_record("keys_initialised", actor=_operator(), kids=created)
        db.session.commit()
    summary = {
        "database": _safe_url(url),
        "keys_dir": rt.key_store.location,
        "tenant": DEFAULT_TENANT,
        "keys": [r.as_json() for r in records],
    }
    emit(summary, as_json, lambda s: s | {"keys": [k["kid"] for k in s["keys"]]})


def _operator() -> CliOperator:
    """Who runs this command, for its audit events."""
    return CliOperator.current()


def _served_issuer(host: str, port: int) -> str:
    """``http://host:port``; a wildcard address is reached on loopback, and an IPv6
    address is bracketed (RFC 3986 §3.2.2)."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 -- compared, not bound
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="worker processes  [default: one per CPU core]",
)
@click.option(
    "--server",
    type=click.Choice(["granian", "gunicorn"]),
    default="granian",
    show_default=True,
    help="granian (Rust HTTP server), or gunicorn with gevent workers (the gunicorn extra)",
)
def serve_command(host: str, port: int, workers: int | None, server: str) -> None:
    """Serve the app on granian (bodies read on its event loop before the app runs, see
    idp.serving) or on gunicorn (settings in idp.observability.gunicorn_conf)."""
    load_settings()  # a bad setting stops here with one line, not in every worker
    problem = servers.missing(server) or servers.cannot_listen(host, port)
    if problem is not None:
        raise IdpError(problem)
    if not is_configured("issuer"):
        # The workers advertise the address they are served on, so tokens, metadata and
        # the audiences of assertions all name the URL clients actually call.
        os.environ["IDP_ISSUER"] = _served_issuer(host, port)
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Workers share metrics through files; a fresh folder per server start.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="idp-metrics-")
    argv_for = servers.granian_argv if server == "granian" else servers.gunicorn_argv
    argv = argv_for(host, port, workers or servers.cores())
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
    """Add the tenant NAME (1-64 of a-z, 0-9, '-', '_')."""
    tenant = tenant_admin.create_tenant(name, _operator())
    db.session.commit()
    emit(_tenant_record(tenant), as_json)


@tenants.command("list")
@json_option
def tenants_list(as_json: bool) -> None:
    """List the tenants."""
    emit([_tenant_record(t) for t in tenant_admin.list_tenants()], as_json)


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


@clients.command("create")
@click.option("--name", required=True, help="A name for operators (1-200 characters).")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="The client's tenant.")
@click.option(
    "--auth-method",
    required=True,
    type=click.Choice(AUTH_METHODS),
    help="How the client authenticates at the token endpoint.",
)
@click.option(
    "--jwks-file",
    type=click.Path(dir_okay=False),
    help="File with the client's public JWKS (private_key_jwt).",
)
@click.option("--jwks-uri", help="https:// URL of the client's public JWKS (private_key_jwt).")
@click.option(
    "--grant-types",
    default="client_credentials",
    show_default=True,
    help=f"Comma-separated, among {', '.join(GRANT_TYPES)}.",
)
@click.option("--scope", default="", help="Space-separated scopes the client may ask for.")
@click.option("--access-token-ttl", type=int, help="Seconds (default: IDP_ACCESS_TOKEN_TTL).")
@click.option("--refresh-token-ttl", type=int, help="Seconds (default: IDP_REFRESH_TOKEN_TTL).")
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
    client, secret = client_admin.create_client(
        spec, runtime().settings.insecure_jwks_uri, _operator()
    )
    db.session.commit()
    record = client_admin.client_record(client)
    if secret:
        record["client_secret"] = secret
    emit(record, as_json)


@clients.command("list")
@json_option
def clients_list(as_json: bool) -> None:
    """List the clients of every tenant (never a secret)."""
    emit([client_admin.client_record(c) for c in client_admin.list_clients()], as_json)


@clients.command("show")
@click.argument("client_id")
@json_option
def clients_show(client_id: str, as_json: bool) -> None:
    """Show the client CLIENT_ID (never its secret)."""
    emit(client_admin.client_record(client_admin.get_client(client_id)), as_json)


@clients.command("delete")
@click.argument("client_id")
@json_option
def clients_delete(client_id: str, as_json: bool) -> None:
    """Delete the client CLIENT_ID and revoke every token it holds."""
    client = client_admin.delete_client(client_id, runtime().revoker, _operator())
    db.session.commit()
    emit({"client_id": client.id, "deleted": True}, as_json)


@clients.command("rotate-secret")
@click.argument("client_id")
@json_option
def clients_rotate_secret(client_id: str, as_json: bool) -> None:
    """Replace the secret of CLIENT_ID; the new one is shown once, the old stops working."""
    client, secret = client_admin.rotate_client_secret(client_id, _operator())
    db.session.commit()
    emit({"client_id": client.id, "client_secret": secret}, as_json)


# -- issuers ----------------------------------------------------------------------

issuers = AppGroup("issuers", help="Manage trusted assertion issuers (jwt-bearer grant).")


@issuers.command("add")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="The tenant trusting it.")
@click.option("--issuer", required=True, help="The 'iss' of the assertions.")
@click.option(
    "--jwks-file", type=click.Path(dir_okay=False), help="File with the issuer's public JWKS."
)
@click.option("--jwks-uri", help="https:// URL of the issuer's public JWKS.")
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
    """Trust the assertions of an issuer for the jwt-bearer grant in a tenant."""
    spec = issuer_admin.IssuerSpec(
        tenant=tenant,
        issuer=issuer,
        jwks=_read_jwks_file(jwks_file),
        jwks_uri=jwks_uri,
        provision=provision,
        scope=scope,
    )
    row = issuer_admin.add_issuer(spec, runtime().settings.insecure_jwks_uri, _operator())
    db.session.commit()
    emit(issuer_admin.issuer_record(row), as_json)


@issuers.command("list")
@click.option("--tenant", default=None, help="Only this tenant's issuers.")
@json_option
def issuers_list(tenant: str | None, as_json: bool) -> None:
    """List the trusted issuers (of every tenant unless --tenant)."""
    rows = issuer_admin.list_issuers(tenant)
    emit([issuer_admin.issuer_record(row) for row in rows], as_json)


@issuers.command("remove")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="The issuer's tenant.")
@click.option("--issuer", required=True, help="The 'iss' to stop trusting.")
@json_option
def issuers_remove(tenant: str, issuer: str, as_json: bool) -> None:
    """Stop trusting an issuer: its assertions are refused at once, its users stay."""
    removed = issuer_admin.remove_issuer(tenant, issuer, _operator())
    record = issuer_admin.issuer_record(removed)
    db.session.commit()
    emit(record, as_json)


# -- users ------------------------------------------------------------------------

users = AppGroup("users", help="Manage users: the operator's side of the /users API.")

# The operator's listing spans every tenant, so its cursors are bound to none of them
# (tenant ids start at 1).
EVERY_TENANT = 0

# The CLI options of the API's user fields, to name them in a refusal.
_USER_OPTIONS = {
    "username": "--username",
    "email": "--email",
    "clientUserId": "--client-user-id",
    "firstName": "--first-name",
    "lastName": "--last-name",
}


def _stdin_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise IdpError("--password-stdin given but standard input held no password")
    return password


def _prompt_password() -> str:
    """Asked twice on a terminal, hidden as typed. Without a terminal no one can answer,
    and a password read from a pipe by accident would end up set."""
    if not sys.stdin.isatty():
        raise IdpError(
            "no terminal to ask for the new password: write it to standard input "
            "and pass --password-stdin"
        )
    return str(click.prompt("New password", hide_input=True, confirmation_prompt=True))


def _user_by_id(user_id: str) -> User:
    """A live user by id, in whichever tenant it lives: the operator sees every tenant."""
    user = find_user_in_any_tenant(user_id)
    if user is None:
        raise IdpError(f"no user with id {user_id!r}")
    return user


def _user_by_name(username: str, tenant: str, provider: str | None) -> User:
    found = find_users_by_username(tenant_admin.require_tenant(tenant).id, username, provider)
    if not found:
        where = f"tenant {tenant!r}" + (f" and provider {provider!r}" if provider else "")
        raise IdpError(f"no user named {username!r} in {where}")
    if len(found) > 1:
        providers = ", ".join(sorted(user.provider for user in found))
        raise IdpError(
            f"users of several providers are named {username!r} in tenant {tenant!r} "
            f"({providers}): pass --provider"
        )
    return found[0]


def _select_user(
    user_id: str | None, username: str | None, tenant: str | None, provider: str | None
) -> User:
    if user_id is not None and username is not None:
        raise IdpError("name the user by USER_ID or by --username, not both")
    if user_id is not None:
        if tenant is not None or provider is not None:
            raise IdpError("--tenant and --provider go with --username, not with USER_ID")
        return _user_by_id(user_id)
    if username is None:
        raise IdpError("name the user: USER_ID, or --username (with --tenant)")
    return _user_by_name(username, tenant or DEFAULT_TENANT, provider)


def user_selector(command: Callable[..., None]) -> Callable[..., None]:
    """The two ways to name one user: USER_ID, or --username in --tenant (--provider
    when users of several providers share the name)."""
    decorators = [
        click.argument("user_id", required=False),
        click.option(
            "--username",
            help="Name the user by username instead of USER_ID (compared as sign-in does).",
        ),
        click.option("--tenant", help=f"The tenant of --username (default: {DEFAULT_TENANT})."),
        click.option(
            "--provider",
            help="The provider of --username ('local', or a jwt-bearer issuer) when users "
            "of several providers share the name.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _emit_user(user: User, as_json: bool) -> None:
    emit(user_record(user), as_json)


def _checked_profile(**fields: str | None) -> dict[str, str]:
    """The given fields, checked by the /users API's own rules."""
    from pydantic import ValidationError

    from idp.users.schemas import CreateUser

    given = {name: value for name, value in fields.items() if value is not None}
    try:
        CreateUser(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        reason = error["msg"]
        if error["type"] == "string_pattern_mismatch":
            reason = (
                "must be an address like name@example.com"
                if field == "email"
                else "must not hold control characters or outer spaces"
            )
        raise IdpError(f"{_USER_OPTIONS.get(field, field)}: {reason}") from None
    return given


@users.command("create")
@click.option("--tenant", default=DEFAULT_TENANT, show_default=True, help="The user's tenant.")
@click.option(
    "--username", required=True, help="Sign-in name, unique in the tenant (RFC 8265 compared)."
)
@click.option("--email", help="Email address.")
@click.option("--first-name", help="Given name (at most 200 characters).")
@click.option("--last-name", help="Family name (at most 200 characters).")
@click.option(
    "--client-user-id",
    help="Your own id for the user, unique among the users the operator created.",
)
@click.option("--scope", default="", help="Space-separated scopes the user may hold.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
def users_create(
    tenant: str,
    username: str,
    email: str | None,
    first_name: str | None,
    last_name: str | None,
    client_user_id: str | None,
    scope: str,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Add a user (without --password-stdin: one who cannot sign in with a password)."""
    _checked_profile(
        username=username,
        email=email,
        clientUserId=client_user_id,
        firstName=first_name,
        lastName=last_name,
    )
    password = _stdin_password() if password_stdin else None
    user = create_user(
        tenant,
        username,
        password,
        email,
        scope,
        client_user_id=client_user_id,
        first_name=first_name,
        last_name=last_name,
        actor=_operator(),
    )
    db.session.commit()
    _emit_user(user, as_json)


@users.command("list")
@click.option("--tenant", help="Only this tenant's users (default: every tenant).")
@click.option("--username", help="Match the username as sign-in does (case, width).")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="At most this many users: one page.",
)
@click.option("--after", metavar="CURSOR", help="The page after the one whose run printed CURSOR.")
@json_option
def users_list(
    tenant: str | None, username: str | None, limit: int, after: str | None, as_json: bool
) -> None:
    """Live users, oldest first, one page at a time. When more follow, stderr says so
    and names the next page's --after CURSOR; stdout stays the listing alone."""
    from idp.users import paging

    tenant_id = tenant_admin.require_tenant(tenant).id if tenant is not None else None
    bound_to = tenant_id if tenant_id is not None else EVERY_TENANT
    filters = {"username": username} if username is not None else {}
    key = runtime().server_secrets.get(paging.SECRET_NAME)
    try:
        position = paging.decode(key, bound_to, filters, after) if after is not None else None
    except paging.InvalidCursor as exc:
        raise IdpError(f"--after: {exc}") from None
    page = list_page(tenant_id, filters, limit, after=position)
    emit([user_record(u) for u in page.users], as_json)
    if page.next_position is not None:
        cursor = paging.encode(key, bound_to, filters, page.next_position)
        click.echo(
            f"idp: a page of {len(page.users)} of {page.total} users; the next: --after {cursor}",
            err=True,
        )


@users.command("show")
@user_selector
@json_option
def users_show(as_json: bool, **who: str | None) -> None:
    """Show the user USER_ID (or --username in --tenant): the /users API's record."""
    _emit_user(_select_user(**who), as_json)


@users.command("lock")
@user_selector
@json_option
def users_lock(as_json: bool, **who: str | None) -> None:
    """Lock the user: sign-in refused and its access tokens dead until unlocked."""
    _set_lock(_select_user(**who), True, as_json)


@users.command("unlock")
@user_selector
@json_option
def users_unlock(as_json: bool, **who: str | None) -> None:
    """Unlock the user and reset its bad-attempt counter."""
    _set_lock(_select_user(**who), False, as_json)


def _set_lock(user: User, locked: bool, as_json: bool) -> None:
    set_lock(user, locked, _operator(), runtime().revoker)
    db.session.commit()
    _emit_user(user, as_json)


@users.command("delete")
@user_selector
@json_option
def users_delete(as_json: bool, **who: str | None) -> None:
    """Soft-delete the user and revoke all its tokens; prints the record with deletedAt."""
    user = _select_user(**who)
    delete_user(user, _operator(), runtime().revoker)
    db.session.commit()
    _emit_user(user, as_json)


@users.command("revoke-tokens")
@user_selector
@json_option
def users_revoke_tokens(as_json: bool, **who: str | None) -> None:
    """Revoke every refresh token of the user and every access token issued so far."""
    revoked = revoke_sessions(_select_user(**who), _operator(), runtime().revoker)
    db.session.commit()
    emit({"revoked": revoked}, as_json)


@users.command("reset-password")
@user_selector
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the new password from standard input (else asked twice on the terminal).",
)
@json_option
def users_reset_password(password_stdin: bool, as_json: bool, **who: str | None) -> None:
    """Set a new password and end the user's sessions."""
    user = _select_user(**who)
    password = _stdin_password() if password_stdin else _prompt_password()
    set_password(user, password, _operator(), "password_reset", runtime().revoker)
    db.session.commit()
    _emit_user(user, as_json)


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

    report = purge(runtime().settings, dry_run=dry_run, actor=_operator())
    emit(report.as_json(), as_json)
