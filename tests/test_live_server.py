"""Acceptance of the key rotation across a real multi-worker gunicorn."""

from __future__ import annotations

import json
import time

import requests


def fetch_kids(base_url: str) -> list[str]:
    # A fresh connection each time, so the two workers both get asked.
    response = requests.get(f"{base_url}/oidc/jwks", headers={"Connection": "close"}, timeout=5)
    return [key["kid"] for key in response.json()["keys"]]


def test_rotation_reaches_every_worker_within_five_seconds(app, idp_env, live_server, run_idp):
    base_url = live_server(idp_env, workers=2)
    before = {fetch_kids(base_url).__len__() for _ in range(6)}
    assert before == {2}

    rotated = run_idp("keys", "rotate", "--force", "--json")
    assert rotated.returncode == 0, rotated.stderr
    expected = {key["kid"] for key in json.loads(rotated.stdout)}
    assert len(expected) == 3

    started = time.monotonic()
    streak = 0
    # Ten fresh connections in a row agreeing means neither worker still serves the old set.
    while streak < 10:
        assert time.monotonic() - started < 5.0, "a worker still served the old JWKS after 5 s"
        streak = streak + 1 if set(fetch_kids(base_url)) == expected else 0
    listed = json.loads(run_idp("keys", "list", "--json").stdout)
    states = {key["kid"]: key["state"] for key in listed}
    assert sorted(states.values()) == ["active", "next", "retired"]

    refused = run_idp("keys", "prune")
    assert refused.returncode != 0
    assert "retired less than" in refused.stderr
