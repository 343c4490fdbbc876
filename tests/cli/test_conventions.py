"""One language for everything the ``idp`` commands print (idp.cli.output).

JSON: one object for one record, an array for a listing; snake_case names, except the
user record, which is the /users API's own (camelCase); times RFC 3339; durations whole
seconds. Text: one line per record, ``name=value`` pairs two spaces apart. Every command
that prints records is run both ways, through Flask's CLI runner (in process: the
subprocess runs of the same commands are in the other tests of tests/cli).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import Result
from flask import Flask
from joserfc.jwk import ECKey

from idp.cli import cli
from idp.users.records import user_record
from tests.oauth.helpers import make_user, password_client

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
CAMEL = re.compile(r"^[a-z][a-z0-9]*([A-Z][a-z0-9]*)*$")
DURATIONS = {"refresh_reuse_grace"}
ISSUER = "https://issuer.example.com"


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    shape: type  # dict: one record; list: a listing
    users: bool = False  # the records are the /users API's user records


def invoke(app: Flask, *args: str, input: str | None = None) -> Result:
    return app.test_cli_runner().invoke(cli, list(args), input=input)


@dataclass
class World:
    """One of each thing a command can print, and its ids."""

    app: Flask
    user_id: str
    client_id: str

    def run(self, case: Case, as_json: bool) -> Result:
        args = [arg.format(user=self.user_id, client=self.client_id) for arg in case.args]
        password = "Another-Horse-7\n" if "--password-stdin" in args else None
        result = invoke(self.app, *args, *(["--json"] if as_json else []), input=password)
        assert result.exit_code == 0, (result.output, result.exception)
        return result


@pytest.fixture
def world(app: Flask, idp_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> World:
    # ``idp keys list`` reads the key store the environment names, as in its own process.
    for name, value in idp_env.items():
        monkeypatch.setenv(name, value)
    jwks = Path(idp_env["IDP_KEYS_DIR"]).parent / "issuer-jwks.json"
    key = ECKey.generate_key("P-256", auto_kid=True)
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    client_id, _ = password_client(app)
    invoke(app, "issuers", "add", "--issuer", ISSUER, "--jwks-file", str(jwks))
    # A rotated key store: a retired key for prune, a next key old enough for nothing.
    assert invoke(app, "keys", "rotate", "--force").exit_code == 0
    return World(app, make_user(app, "alice"), client_id)


CASES = {
    "init": Case(("init",), dict),
    "tenants create": Case(("tenants", "create", "acme"), dict),
    "tenants list": Case(("tenants", "list"), list),
    "clients create": Case(
        ("clients", "create", "--name", "c", "--auth-method", "client_secret_basic"), dict
    ),
    "clients list": Case(("clients", "list"), list),
    "clients show": Case(("clients", "show", "{client}"), dict),
    "clients rotate-secret": Case(("clients", "rotate-secret", "{client}"), dict),
    "clients delete": Case(("clients", "delete", "{client}"), dict),
    "issuers add": Case(
        ("issuers", "add", "--issuer", "https://b.example", "--jwks-uri", "https://b.example/k"),
        dict,
    ),
    "issuers list": Case(("issuers", "list"), list),
    "issuers remove": Case(("issuers", "remove", "--issuer", ISSUER), dict),
    "users create": Case(
        ("users", "create", "--username", "bob", "--first-name", "Bob", "--password-stdin"),
        dict,
        users=True,
    ),
    "users list": Case(("users", "list"), list, users=True),
    "users show": Case(("users", "show", "{user}"), dict, users=True),
    "users lock": Case(("users", "lock", "{user}"), dict, users=True),
    "users unlock": Case(("users", "unlock", "--username", "alice"), dict, users=True),
    "users reset-password": Case(
        ("users", "reset-password", "{user}", "--password-stdin"), dict, users=True
    ),
    "users delete": Case(("users", "delete", "{user}"), dict, users=True),
    "users revoke-tokens": Case(("users", "revoke-tokens", "{user}"), dict),
    "keys list": Case(("keys", "list"), list),
    "keys generate": Case(("keys", "generate"), dict),
    "keys rotate": Case(("keys", "rotate", "--force"), list),
    "keys rotate --if-older-than": Case(("keys", "rotate", "--if-older-than", "90d"), list),
    "keys prune": Case(("keys", "prune", "--force"), list),
    "audit list": Case(("audit", "list"), list),
    "purge": Case(("purge", "--dry-run"), dict),
}


def walk(value: Any, visit: Callable[[str, Any], None]) -> None:
    """Every (name, value) pair of the JSON, at any depth; a JWKS is the keys' own format."""
    if isinstance(value, list):
        for item in value:
            walk(item, visit)
    elif isinstance(value, dict):
        for name, item in value.items():
            visit(name, item)
            if name != "jwks":
                walk(item, visit)


def check_value(name: str, value: Any) -> None:
    if name in DURATIONS or name.endswith("_ttl"):
        assert value is None or type(value) is int, (name, value)
    if (name.endswith("_at") or name.endswith("At") or name == "at") and value is not None:
        assert datetime.fromisoformat(value).tzinfo is not None, (name, value)


@pytest.mark.parametrize("name", list(CASES))
def test_json_is_one_object_or_an_array_with_one_naming(world: World, name: str) -> None:
    case = CASES[name]
    printed = json.loads(world.run(case, as_json=True).stdout)
    assert type(printed) is case.shape
    records = printed if isinstance(printed, list) else [printed]
    assert records, "a listing with nothing in it checks nothing"
    for record in records:
        if case.users:
            # The API's user record as it is, camelCase (SPEC §3, §6).
            assert list(record) == list(user_record_fields(world.app))
            assert all(CAMEL.match(field) for field in record)
        else:
            walk(record, lambda field, _: assert_snake(field))
        walk(record, check_value)


def assert_snake(field: str) -> None:
    assert SNAKE.match(field), field


def user_record_fields(app: Flask) -> list[str]:
    from idp.models import User, db

    with app.app_context():
        return list(user_record(db.session.query(User).first()))


# A value with a space, quote or "=" is a JSON string, a nested object compact JSON: a
# field never splits in two.
FIELD = re.compile(r'[A-Za-z_]+=(?:"(?:[^"\\]|\\.)*"|[\[{]\S*[\]}]|[^\s"]+|)')


@pytest.mark.parametrize("name", list(CASES))
def test_text_is_one_line_of_fields_per_record(world: World, name: str) -> None:
    case = CASES[name]
    lines = world.run(case, as_json=False).stdout.splitlines()
    if case.shape is dict:
        assert len(lines) == 1
    elif name == "keys prune":
        assert len(lines) == 1  # the one retired key; a second run would find none
    elif name == "keys rotate":
        assert len(lines) == len(json.loads(world.run(CASES["keys list"], as_json=True).stdout))
    else:
        assert len(lines) == len(json.loads(world.run(case, as_json=True).stdout)) > 0
    for line in lines:
        fields = line.split("  ")
        assert all(FIELD.fullmatch(field) for field in fields), line


def test_a_value_that_would_break_the_layout_is_quoted() -> None:
    from idp.cli.output import describe_fields

    line = describe_fields(
        {"a": "x y", "b": 'say "hi"', "c": "k=v", "d": "line\nbreak", "e": None, "f": ["p", "q"]}
    )
    assert line == 'a="x y"  b="say \\"hi\\""  c="k=v"  d="line\\nbreak"  f=p,q'
    assert "\n" not in line


def test_every_command_and_option_has_help() -> None:
    context = click.Context(cli)
    missing: list[str] = []

    def visit(command: click.Command, path: str) -> None:
        if not (command.help or command.short_help):
            missing.append(path)
        missing.extend(
            f"{path} {param.opts[0]}"
            for param in command.params
            if isinstance(param, click.Option) and not param.help
        )
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None
                visit(sub, f"{path} {name}")

    visit(cli, "idp")
    assert missing == []


def test_version_comes_from_the_package_metadata(app: Flask) -> None:
    result = invoke(app, "--version")
    assert result.exit_code == 0
    assert result.stdout == f"idp, version {importlib.metadata.version('idp')}\n"
