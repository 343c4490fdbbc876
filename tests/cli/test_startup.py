"""``idp`` commands import what they need when they run: a command that reads the key
store or the database never loads Alembic, Flask-Migrate, Authlib or the HTTP client, and
redis-py only when Redis is configured. (Start-up time itself is measured by
bench/cli_startup.py, never in a test.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idp.paths import project_base_dir
from idp.runtime import runtime

HEAVY = ("alembic", "flask_migrate", "authlib", "requests", "redis")
PROBE = """
import json, sys
from idp.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    assert not exit.code, exit.code
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _probe(idp_env: dict[str, str], cwd: Path, command: list[str]) -> tuple[str, set[str]]:
    """Run ``idp <command>`` in a fresh interpreter: its output, and the top-level
    modules it had imported when it finished."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")} | idp_env
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    output, _, modules = done.stdout.rstrip("\n").rpartition("\n")
    return output, set(json.loads(modules))


@pytest.mark.parametrize(
    "command", [["keys", "list"], ["tenants", "list"], ["audit", "list"], ["purge", "--dry-run"]]
)
def test_a_command_loads_no_heavy_module_it_does_not_need(
    app, idp_env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    _, loaded = _probe(idp_env, tmp_path, command)
    unneeded = set(HEAVY) - ({"redis"} if "IDP_REDIS_URL" in idp_env else set())
    assert loaded & unneeded == set()


def test_keys_list_reads_the_key_folder_without_the_database_layer(
    app, idp_env: dict[str, str], tmp_path: Path
) -> None:
    """The file store is listed from its folder, without building the app: the command's
    own output is the app's key store, and SQLAlchemy is never imported."""
    listing, loaded = _probe(idp_env, tmp_path, ["keys", "list", "--json"])
    with app.app_context():
        expected = [record.as_json() for record in runtime().key_store.records()]
    assert json.loads(listing) == expected
    assert [k["state"] for k in expected] == ["active", "next"]  # the control: keys to list
    assert "idp" in loaded  # the probe saw the command's imports
    assert loaded & {"sqlalchemy", "flask_sqlalchemy"} == set()


def test_commands_find_relative_paths_where_the_app_does(app) -> None:
    assert project_base_dir() == project_base_dir(app)
