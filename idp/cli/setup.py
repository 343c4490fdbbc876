"""``idp init`` and ``idp serve``: the database, the keys and the default tenant made
ready, then the server started."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from idp.audit import record as audit_record
from idp.cli.output import emit, json_option, operator
from idp.errors import IdpError
from idp.models import DEFAULT_TENANT, db
from idp.registrations import tenants as tenant_admin
from idp.runtime import runtime
from idp.serving import servers
from idp.settings import is_configured, load_settings

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
    tenant_admin.ensure_tenant(DEFAULT_TENANT, operator())
    db.session.commit()
    before = {r.kid for r in rt.key_store.records()}
    records = rt.key_store.initialise(rt.settings.signing_alg)
    created = [r.kid for r in records if r.kid not in before]
    if created:
        audit_record("keys_initialised", actor=operator(), kids=created)
        db.session.commit()
    summary = {
        "database": _safe_url(url),
        "keys_dir": rt.key_store.location,
        "tenant": DEFAULT_TENANT,
        "keys": [r.as_json() for r in records],
    }
    emit(summary, as_json, lambda s: s | {"keys": [k["kid"] for k in s["keys"]]})


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
