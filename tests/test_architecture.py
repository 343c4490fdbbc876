"""The shape of the ``idp`` package: no import loop between its parts, and the lower
layers never import the upper ones. Read from the source with ``ast``, so a lazy import
inside a function counts as much as one at the top of a module."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "idp"

# Parts that protocol and web code build on; none of them may import what is above.
LOWER_LAYERS = {
    "idp.settings": set(),
    "idp.errors": set(),
    "idp.scopes": set(),
    "idp.models": set(),
    "idp.keys": set(),
    "idp.stores": set(),
    "idp.verify": set(),
    "idp.registrations": set(),
    "idp.tokens": set(),
    "idp.web": set(),
    "idp.users": {"idp.oauth", "idp.cli", "idp.app"},
}
UPPER = {"idp.oauth", "idp.users", "idp.admin", "idp.cli", "idp.app", "idp.observability"}


def _part(module: str) -> str:
    """idp.oauth.grants -> idp.oauth; idp.verify -> idp.verify."""
    return ".".join(module.split(".")[:2])


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "idp":
                found |= {f"idp.{alias.name}" for alias in node.names}
            elif node.module.startswith("idp."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("idp.")}
    return found


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue  # Alembic scripts run on their own, after everything is importable
        source = _part(_module_name(path))
        for target in _imports(path):
            if _part(target) != source:
                edges[source].add(_part(target))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in edges.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_loop_between_the_parts_of_idp() -> None:
    assert _cycles(_graph()) == []


def test_the_loop_finder_finds_a_loop() -> None:
    """Positive control: the check above can fail."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("lower", sorted(LOWER_LAYERS))
def test_lower_layers_do_not_import_upper_ones(lower: str) -> None:
    forbidden = (UPPER - {lower}) if not LOWER_LAYERS[lower] else LOWER_LAYERS[lower]
    assert not (_graph().get(lower, set()) & forbidden)


def test_the_verifier_stands_alone() -> None:
    """Resource servers import idp.verify without idp's server: no Flask app, no database."""
    allowed = {"idp.jwks_fetch", "idp.registry", "idp.tokens.claims"}
    assert _imports(PACKAGE / "verify.py") <= allowed


def test_migrations_do_not_import_the_code_they_once_used() -> None:
    """A migration must do tomorrow what it did the day it was written: it keeps its own
    copy of any rule (revision 0002 keeps the username rule) and uses plain column types.
    Only the error base class, which the CLI turns into one line, may come from idp."""
    for path in sorted((PACKAGE / "migrations" / "versions").glob("*.py")):
        assert _imports(path) <= {"idp.errors"}, path.name


def test_the_import_reader_sees_a_migration_import() -> None:
    """Positive control: ``_imports`` reads ``import idp.x`` and ``from idp.x import y``."""
    path = PACKAGE / "migrations" / "env.py"
    assert "idp.models" in _imports(path)


def _calls_runtime(path: Path) -> bool:
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "runtime"
        for node in ast.walk(ast.parse(path.read_text()))
    )


def _is_edge(path: Path) -> bool:
    """A CLI command module, an entry point that builds the app, or a module that registers
    HTTP routes."""
    source = path.read_text()
    in_cli = path.parent.name == "cli"
    builds_app = "\napp = " in source  # wsgi.py, serving/app.py: what the servers import
    return in_cli or builds_app or "Blueprint(" in source or "add_url_rule(" in source


def test_services_are_reached_through_runtime_only_at_the_edges() -> None:
    """Views and CLI commands look the services up; everything below them is handed what
    it needs, so it can be called and tested without an application context."""
    callers = [p for p in PACKAGE.rglob("*.py") if p.name != "runtime.py" and _calls_runtime(p)]
    assert [p.relative_to(PACKAGE).as_posix() for p in callers if not _is_edge(p)] == []
    # Positive control: the reader sees the calls the views make.
    assert PACKAGE / "users" / "api.py" in callers


MAX_MODULE_LINES = 400


def test_no_module_is_too_long_to_read_as_one_piece() -> None:
    too_long = {
        path.relative_to(PACKAGE).as_posix(): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_only_the_cli_imports_the_operator_package() -> None:
    """``idp.admin`` holds what only an operator's command does; nothing that serves
    requests reaches for it."""
    importers = {source for source, targets in _graph().items() if "idp.admin" in targets}
    assert importers <= {"idp.cli"}
    assert "idp.cli" in importers  # positive control: the CLI's import is seen
