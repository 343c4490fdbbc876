"""How every ``idp`` command prints: one record or a list, as text lines or as JSON.

JSON (``--json``): one object for one record, an array for a listing. Field names are
snake_case, except the user record, which is the ``/users`` API's (camelCase). Times
are RFC 3339 strings, durations whole seconds.

Text: one line per record, the same fields in the same order as the JSON, written
``name=value`` and separated by two spaces; null fields are left out. A value with a
space, quote, ``=`` or control character is a JSON string, lists of names are joined
by commas, nested objects are compact JSON: a line is always one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from idp.audit import CliOperator

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON: an object for one record, an array for a listing.",
)


def emit(
    data: Any, as_json: bool, text_view: Callable[[Any], Mapping[str, Any]] | None = None
) -> None:
    """Print ``data`` (a record or a list of them); ``text_view`` picks what a text line
    shows of a record when its JSON holds more than fits on one line."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    items = data if isinstance(data, list) else [data]
    for item in items:
        click.echo(describe_fields(text_view(item) if text_view else item))


def describe_fields(record: Mapping[str, Any]) -> str:
    return "  ".join(
        f"{name}={text_value(value)}" for name, value in record.items() if value is not None
    )


def text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(item, str | int) for item in value):
        return ",".join(text_value(item) for item in value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    text = str(value)
    if not text or not text.isprintable() or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text)
    return text


def operator() -> CliOperator:
    """Who runs this command, for its audit events. Imported when called: ``idp keys`` on
    the file store prints through this module without loading the database layer."""
    from idp.audit import CliOperator

    return CliOperator.current()
