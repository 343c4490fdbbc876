"""``make serve`` installs idp without its dev extras: granian must come from idp's own
dependencies, and gunicorn's gevent worker from the ``gunicorn`` extra, not from the test
tools that happen to bring it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _requirements(listed: list[str]) -> dict[str, Requirement]:
    return {r.name.lower(): r for r in map(Requirement, listed)}


def test_granian_is_a_dependency_and_gunicorn_an_extra() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    runtime = _requirements(project["dependencies"])
    assert "granian" in runtime
    assert "uvloop" in runtime  # idp.serving.servers passes granian --loop uvloop
    assert "gunicorn" not in runtime and "gevent" not in runtime
    extra = _requirements(project["optional-dependencies"]["gunicorn"])
    # Without gunicorn's own extra, gunicorn 27 serves no gevent worker:
    # "No module named 'packaging'".
    assert "gevent" in extra["gunicorn"].extras
    assert "gevent" in extra
    # The test suite runs the gunicorn path too.
    assert "idp[gunicorn]" in project["optional-dependencies"]["dev"]
