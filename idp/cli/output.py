"""How every ``idp`` command prints: one record or a list, as text lines or as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def emit(data: Any, as_json: bool, describe: Callable[[Any], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    items = data if isinstance(data, list) else [data]
    for item in items:
        click.echo(describe(item))


def describe_fields(record: dict[str, Any]) -> str:
    return "  ".join(f"{name}={value}" for name, value in record.items() if value is not None)
