"""``make serve`` installs idp without its dev extras, so what the gevent worker imports
must come from idp's own dependencies, not from the test tools that happen to bring it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_gunicorn_comes_with_what_its_gevent_worker_imports() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    runtime = {r.name.lower(): r for r in map(Requirement, project["dependencies"])}
    # Without the extra, gunicorn 27 serves no gevent worker: "No module named 'packaging'".
    assert "gevent" in runtime["gunicorn"].extras
    assert "gevent" in runtime
