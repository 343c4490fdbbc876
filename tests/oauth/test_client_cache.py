"""Workers cache client registrations, yet a deleted client or a rotated secret stops
working within one second on every worker (idp.registrations)."""

from __future__ import annotations

import json
import time

import requests

from tests.oauth.helpers import basic, register

FORM = {"grant_type": "client_credentials"}
ROUNDS = 12  # with 2 workers, enough requests that both have served (and cached) the client


def _statuses(base_url: str, client_id: str, secret: str) -> list[int]:
    return [
        requests.post(
            f"{base_url}/oidc/token", data=FORM, headers=basic(client_id, secret), timeout=10
        ).status_code
        for _ in range(ROUNDS)
    ]


def test_a_rotated_secret_is_refused_within_a_second_on_every_worker(
    app, idp_env, live_server, run_idp
) -> None:
    base_url = live_server(idp_env, workers=2)
    client_id, secret = register(app, auth_method="client_secret_basic")
    assert _statuses(base_url, client_id, secret) == [200] * ROUNDS  # cached by both workers
    rotated = run_idp("clients", "rotate-secret", client_id, "--json")
    assert rotated.returncode == 0, rotated.stderr
    new_secret = json.loads(rotated.stdout)["client_secret"]
    time.sleep(1.0)
    assert _statuses(base_url, client_id, secret) == [401] * ROUNDS
    assert _statuses(base_url, client_id, new_secret) == [200] * ROUNDS


def test_a_deleted_client_is_refused_within_a_second_on_every_worker(
    app, idp_env, live_server, run_idp
) -> None:
    base_url = live_server(idp_env, workers=2)
    client_id, secret = register(app, auth_method="client_secret_basic")
    other_id, other_secret = register(app, auth_method="client_secret_basic")
    assert _statuses(base_url, client_id, secret) == [200] * ROUNDS
    deleted = run_idp("clients", "delete", client_id)
    assert deleted.returncode == 0, deleted.stderr
    time.sleep(1.0)
    assert _statuses(base_url, client_id, secret) == [401] * ROUNDS
    # Positive control: the other client, cached before the change, still works.
    assert _statuses(base_url, other_id, other_secret) == [200] * ROUNDS
