"""The ``idp`` command: Flask's click machinery around the application factory.

Each command group lives in its own module, imported only when the command line names it
(click's lazily loaded subcommands): ``idp keys list`` does not pay for importing the
database layer that the user and client commands need.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click
from flask import Flask
from flask.cli import AppGroup, ScriptInfo

from idp.errors import IdpError

# Command name -> "module:attribute" of its click command or group.
COMMANDS = {
    "init": "idp.cli.setup:init_command",
    "serve": "idp.cli.setup:serve_command",
    "tenants": "idp.cli.registrations:tenants",
    "clients": "idp.cli.registrations:clients",
    "issuers": "idp.cli.registrations:issuers",
    "users": "idp.cli.users:users",
    "keys": "idp.cli.keys:keys",
    "audit": "idp.cli.audit:audit",
    "purge": "idp.cli.audit:purge_command",
}


class LazyGroup(AppGroup):
    """An ``AppGroup`` whose commands are imported by name when first asked for."""

    def __init__(self, name: str, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(name, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = self.lazy[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
        return command


cli = LazyGroup("idp", COMMANDS, help="idp: OAuth 2.0 / OpenID Connect authorization server.")
click.version_option(package_name="idp", prog_name="idp", help="Print the version and exit.")(cli)


def _create_cli_app() -> Flask:
    from idp.app import create_app

    # No web side: a command starts without importing Authlib, Alembic or the views.
    app = create_app(web=False)
    # A command's audit events are rows of the trail, and its output is the answer: the
    # info lines a server logs would only clutter a successful run's stderr.
    logging.getLogger("idp").setLevel(logging.WARNING)
    return app


def main(argv: list[str] | None = None) -> None:
    info = ScriptInfo(create_app=_create_cli_app, set_debug_flag=False)
    try:
        cli.main(args=argv, prog_name="idp", obj=info)
    except IdpError as exc:
        click.echo(f"idp: error: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        # Only a command that used the database can raise SQLAlchemy's errors, and it has
        # imported SQLAlchemy by then: a command that did not, never pays for the import.
        sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
        if sqlalchemy_errors is None or not isinstance(exc, sqlalchemy_errors.SQLAlchemyError):
            raise
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        click.echo(f"idp: error: database: {reason} (did you run 'idp init'?)", err=True)
        sys.exit(1)
