"""The ``idp keys`` commands as a scheduler and an operator run them (real subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def run_json(run_idp: Any, *args: str) -> Any:
    result = run_idp(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _backdate(manifest_path: Path, moment: str) -> None:
    """Pretend every key was created (and the active one activated) at ``moment``."""
    manifest = json.loads(manifest_path.read_text())
    for key in manifest["keys"]:
        key["created_at"] = moment
        if key["state"] == "active":
            key["activated_at"] = moment
    manifest_path.write_text(json.dumps(manifest))


def test_generate_works_right_after_init(run_idp) -> None:
    initialised = run_json(run_idp, "init")
    generated = run_json(run_idp, "keys", "generate", "--alg", "EdDSA")
    assert generated["state"] == "next" and generated["alg"] == "EdDSA"
    listed = run_json(run_idp, "keys", "list")
    assert sorted(k["state"] for k in listed) == ["active", "next", "next"]
    assert {k["kid"] for k in initialised["keys"]} < {k["kid"] for k in listed}


def test_if_older_than_does_nothing_on_a_young_key_and_rotates_an_old_one(run_idp, idp_env) -> None:
    run_idp("init")
    before = run_json(run_idp, "keys", "list")
    young = run_idp("keys", "rotate", "--if-older-than", "90d", "--json")
    assert young.returncode == 0, young.stderr
    assert json.loads(young.stdout) == before  # the same listing, nothing changed
    active = next(k["kid"] for k in before if k["state"] == "active")
    assert f"nothing done: the active key {active} is" in young.stderr
    assert "not older than 7776000 s" in young.stderr
    assert run_json(run_idp, "keys", "list") == before
    plain = run_idp("keys", "rotate", "--if-older-than", "12h")
    assert plain.returncode == 0 and "not older than 43200 s" in plain.stderr
    assert plain.stdout.splitlines()[0].startswith("kid=")

    _backdate(Path(idp_env["IDP_KEYS_DIR"]) / "manifest.json", "2020-01-01T00:00:00+00:00")
    old = run_idp("keys", "rotate", "--if-older-than", "90d", "--json")
    assert old.returncode == 0 and "nothing done" not in old.stderr
    rotated = json.loads(old.stdout)
    promoted = next(k["kid"] for k in before if k["state"] == "next")
    assert next(k["kid"] for k in rotated if k["state"] == "active") == promoted
    assert sorted(k["state"] for k in rotated) == ["active", "next", "retired"]
    again = run_idp("keys", "rotate", "--if-older-than", "90d", "--json")
    assert "nothing done" in again.stderr and json.loads(again.stdout) == rotated


@pytest.mark.parametrize("bad", ["90", "ninety days", "-1d", "1y", ""])
def test_a_bad_duration_is_one_clear_error(run_idp, bad: str) -> None:
    run_idp("init")
    result = run_idp("keys", "rotate", "--if-older-than", bad)
    if bad == "90":  # a bare number is seconds
        assert result.returncode == 0
        return
    assert result.returncode != 0
    assert "--if-older-than" in result.stderr and "90d" in result.stderr
    assert "Traceback" not in result.stderr
