"""Files idp creates are private: the keys folder 0700, key files 0600, the SQLite
database and its journal files 0600, the instance folder it creates 0700."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SQLITE_JOURNALS = ("-wal", "-shm")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def common_umask() -> Iterator[None]:
    """The usual 022: without idp's care, SQLite and mkdir would leave files world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _env(keys: Path, database: Path) -> dict[str, str]:
    return {"IDP_KEYS_DIR": str(keys), "IDP_DATABASE_URL": f"sqlite:///{database}"}


def _ok(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return result


def _shipped_keys_folder(tmp_path: Path) -> Path:
    """Like the checkout's keys/ with its .gitkeep: already there, 0755."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / ".gitkeep").touch()
    keys.chmod(0o755)
    return keys


def _hold_open(database: Path) -> sqlite3.Connection:
    """A reader with an open transaction: the -wal and -shm files outlive the CLI processes
    (the last connection to close checkpoints and deletes them)."""
    reader = sqlite3.connect(database, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return reader


def test_init_and_writes_leave_only_private_files(run_idp, tmp_path: Path) -> None:
    keys = _shipped_keys_folder(tmp_path)
    database = tmp_path / "instance" / "idp.sqlite3"
    env = _env(keys, database)

    _ok(run_idp("init", env=env))
    reader = _hold_open(database)
    try:
        for name in ("first", "second"):
            _ok(run_idp("clients", "create", "--name", name, "--auth-method",
                        "client_secret_basic", "--json", env=env))  # fmt: skip
        assert mode(keys) == 0o700
        key_files = [p for p in keys.iterdir() if p.name != ".gitkeep"]
        assert any(p.name == "manifest.json" for p in key_files)
        assert len([p for p in key_files if p.suffix == ".json"]) == 3  # manifest + 2 keys
        assert {p.name: mode(p) for p in key_files} == {p.name: 0o600 for p in key_files}
        assert mode(database.parent) == 0o700  # the instance folder idp created
        assert mode(database) == 0o600
        for suffix in SQLITE_JOURNALS:
            journal = Path(f"{database}{suffix}")
            assert journal.exists(), f"{journal.name} should exist while a reader is open"
            assert mode(journal) == 0o600, journal.name
    finally:
        reader.close()

    # Positive control: the tightened files still serve the CLI.
    listed = json.loads(_ok(run_idp("keys", "list", "--json", env=env)).stdout)
    assert sorted(k["state"] for k in listed) == ["active", "next"]
    clients = json.loads(_ok(run_idp("clients", "list", "--json", env=env)).stdout)
    assert len(clients) == 2


def test_init_tightens_an_existing_database_and_its_journals(run_idp, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    database = folder / "idp.sqlite3"
    made = sqlite3.connect(database, isolation_level=None)
    made.execute("PRAGMA journal_mode=WAL")
    made.execute("CREATE TABLE leftover (x)")  # a WAL write: -wal and -shm now exist
    for path in (database, *(Path(f"{database}{s}") for s in SQLITE_JOURNALS)):
        path.chmod(0o644)
    try:
        _ok(run_idp("init", env=_env(tmp_path / "keys", database)))
        assert mode(database) == 0o600
        for suffix in SQLITE_JOURNALS:
            assert mode(Path(f"{database}{suffix}")) == 0o600, suffix
    finally:
        made.close()
    assert mode(folder) == 0o755  # the operator's own folder is left as it was
    _ok(run_idp("keys", "list", env=_env(tmp_path / "keys", database)))


def test_init_tightens_a_populated_keys_folder(run_idp, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    env = _env(keys, tmp_path / "idp.sqlite3")
    _ok(run_idp("init", env=env))
    keys.chmod(0o755)  # e.g. restored from a backup by a careless copy
    _ok(run_idp("init", env=env))
    assert mode(keys) == 0o700
    assert _ok(run_idp("keys", "list", env=env)).stdout.count("ES256") == 2
