"""Workers cache client registrations, yet a deleted client or a rotated secret stops
working within one second on every worker (idp.registrations.cache)."""

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


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_copies_older_than_the_interval_are_never_used_unchecked(app, monkeypatch) -> None:
    """When the version cannot be read, a request past the interval fails (the endpoint
    answers 503) instead of authenticating a client that may have been deleted, and a
    request waiting on another's check does not slip through with the old copy either."""
    import threading

    import pytest
    from sqlalchemy.exc import OperationalError

    from idp.models import db
    from idp.registrations.cache import CHECK_INTERVAL, ClientRegistry

    client_id, _ = register(app, auth_method="client_secret_basic")
    clock = _Clock()
    with app.app_context():
        registry = ClientRegistry(db.engine, clock)
        assert registry.get(client_id) is not None  # checked and cached

        def refuse(*_: object) -> None:
            raise OperationalError("SELECT", {}, Exception("database is down"))

        monkeypatch.setattr(registry.engine, "connect", refuse)
        clock.now += CHECK_INTERVAL / 2
        assert registry.get(client_id) is not None  # control: a fresh copy needs no database
        clock.now += CHECK_INTERVAL
        with pytest.raises(OperationalError):
            registry.get(client_id)

        # Another request holds the check: this one waits for it, then checks itself.
        outcome: list[str] = []
        registry._checking.acquire()

        def waiter() -> None:
            try:
                registry.get(client_id)
                outcome.append("served from the old copy")
            except OperationalError:
                outcome.append("refused")

        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(0.3)
        assert outcome == []  # still waiting, not served
        registry._checking.release()
        thread.join(5)
        assert outcome == ["refused"]
