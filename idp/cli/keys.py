"""``idp keys``: the signing keys in the key store the settings name.

Imported on its own when the command line names it, and light on purpose: ``idp keys
list`` on the file store reads the key folder without building the app, which is what an
operator's scripts call most.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click
from flask.cli import AppGroup, ScriptInfo

from idp.cli.output import emit, json_option
from idp.errors import IdpError
from idp.paths import project_base_dir
from idp.registry import SIGNING_ALGS
from idp.settings import load_settings

if TYPE_CHECKING:
    from idp.keys.store import KeyRecord
    from idp.runtime import Runtime

keys = AppGroup("keys", help="Manage signing keys.")


def _key_json(records: Iterable[KeyRecord]) -> list[dict[str, Any]]:
    return [r.as_json() for r in records]


@keys.command("list", with_appcontext=False)
@json_option
def keys_list(as_json: bool) -> None:
    """List the keys: kid, alg, state and their times."""
    emit(_key_json(_listed_records()), as_json)


def _listed_records() -> list[KeyRecord]:
    settings = load_settings()
    if settings.key_store == "file":
        # The folder alone: listing files needs neither the app nor the database, so the
        # command starts without importing SQLAlchemy or Flask-SQLAlchemy.
        from idp.keys.store import FileKeyStore

        return FileKeyStore(settings.anchored(project_base_dir()).keys_dir).records()
    app = click.get_current_context().ensure_object(ScriptInfo).load_app()
    with app.app_context():
        return _runtime().key_store.records()


def _runtime() -> Runtime:
    from idp.runtime import runtime

    return runtime()


def _record_change(event: str, **detail: Any) -> None:
    """The audit event of a change to the key store, in the database whichever store
    holds the keys: the change is made, so the event follows it."""
    from idp.audit import CliOperator, record
    from idp.models import db

    record(event, actor=CliOperator.current(), **detail)
    db.session.commit()


@keys.command("generate")
@click.option("--alg", type=click.Choice(SIGNING_ALGS), help="Default: IDP_SIGNING_ALG.")
@json_option
def keys_generate(alg: str | None, as_json: bool) -> None:
    """Add a next key (published now, signing after the next rotation)."""
    rt = _runtime()
    record = rt.key_store.generate(alg or rt.settings.signing_alg)
    _record_change("key_generated", kid=record.kid, alg=record.alg)
    emit(record.as_json(), as_json)


def _duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from idp.keys.durations import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except IdpError as exc:
        raise click.BadParameter(str(exc)) from None


@keys.command("rotate")
@click.option("--force", is_flag=True, help="Rotate even if the next key is younger than max-age.")
@click.option("--alg", type=click.Choice(SIGNING_ALGS), help="Alg of a new next key.")
@click.option(
    "--if-older-than",
    "older_than",
    metavar="DURATION",
    callback=_duration_option,
    help="Rotate only when the active key has signed longer than this (90d, 12h, 30m, 3600s); "
    "otherwise do nothing and exit 0. For schedulers.",
)
@json_option
def keys_rotate(force: bool, alg: str | None, older_than: int | None, as_json: bool) -> None:
    """Oldest next → active, active → retired; a new next key when none is left.

    Prints the keys after the run, as ``keys list`` does, whether it rotated or not; when
    ``--if-older-than`` finds the active key young enough, a line on stderr says so.
    """
    rt = _runtime()
    result = rt.key_store.rotate(
        alg or rt.settings.signing_alg,
        min_next_age=rt.settings.jwks_max_age,
        force=force,
        older_than=older_than,
    )
    if result.rotated:
        _record_change(
            "keys_rotated",
            promoted=result.promoted.kid if result.promoted else None,
            retired=result.retired.kid if result.retired else None,
            created=[r.kid for r in result.created],
        )
    else:
        active = next((r for r in result.records if r.state == "active"), None)
        click.echo(
            f"idp: nothing done: the active key {active.kid if active else '(none)'} is "
            f"{result.active_age} s old, not older than {older_than} s",
            err=True,
        )
    emit(_key_json(result.records), as_json)


@keys.command("prune")
@click.option("--force", is_flag=True, help="Also remove retired keys still inside the window.")
@json_option
def keys_prune(force: bool, as_json: bool) -> None:
    """Remove retired keys that no unexpired token can still need."""
    from idp.models import db

    rt = _runtime()
    window = rt.lifetimes.outlived_by_every_token(db.session)
    result = rt.key_store.prune(min_retired_age=window, force=force)
    if result.removed:
        _record_change("keys_pruned", kids=[r.kid for r in result.removed])
    emit(_key_json(result.removed), as_json)
    if result.kept_young:
        kids = ", ".join(r.kid for r in result.kept_young)
        raise IdpError(
            f"refusing to prune {kids}: retired less than {window} s ago (longest access-token "
            "lifetime plus clock skew), so tokens it signed may still be valid; "
            "wait, or pass --force"
        )


@keys.command("import-files")
@click.option(
    "--from",
    "source",
    type=click.Path(file_okay=False),
    help="Key folder to copy from. Default: IDP_KEYS_DIR.",
)
@json_option
def keys_import_files(source: str | None, as_json: bool) -> None:
    """Copy a file key store (keys and states) into the database key store."""
    from idp.keys.database import DatabaseKeyStore
    from idp.keys.store import FileKeyStore

    rt = _runtime()
    if not isinstance(rt.key_store, DatabaseKeyStore):
        raise IdpError(
            "the key store in use is the file store: set IDP_KEY_STORE=database and "
            "IDP_KEYS_ENCRYPTION_KEY to import into the database"
        )
    files = FileKeyStore(source or rt.settings.keys_dir)
    if not files.records():
        raise IdpError(f"no keys to import in {files.location}")
    records = rt.key_store.import_keys(files.snapshot())
    _record_change("keys_imported", kids=[r.kid for r in records])
    emit(_key_json(records), as_json)
