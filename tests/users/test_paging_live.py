"""Keyset paging and totals against a real multi-worker server while users come and go."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.users.conftest import client_token
from tests.users.test_paging import live_count, seed

SEEDED = 10_000
CREATES = 1_000
DELETES = 1_000
WRITERS = 8


def test_paging_while_users_are_created_and_deleted(app, http, idp_env, live_server) -> None:
    seeded = seed(app, SEEDED)
    headers = {"Authorization": f"Bearer {client_token(http, app)}"}
    base_url = live_server(idp_env, workers=2)
    doomed = random.Random(13).sample(seeded, DELETES)
    writes_done = 0
    lock = threading.Lock()
    started = threading.Event()

    def write(job: tuple[str, Any]) -> int:
        nonlocal writes_done
        kind, arg = job
        with requests.Session() as session:
            if kind == "create":
                response = session.post(
                    f"{base_url}/users",
                    json={"username": f"new-{arg}"},
                    headers=headers,
                    timeout=30,
                )
            else:
                response = session.delete(f"{base_url}/users/{arg}", headers=headers, timeout=30)
        with lock:
            writes_done += 1
            if writes_done >= 50:
                started.set()
        return response.status_code

    jobs = [("create", i) for i in range(CREATES)] + [("delete", user_id) for user_id in doomed]
    random.Random(7).shuffle(jobs)
    with ThreadPoolExecutor(WRITERS) as pool:
        results = pool.map(write, jobs)
        assert started.wait(60)
        seen: list[str] = []
        pages = 0
        with requests.Session() as session:
            with lock:
                writes_before = writes_done
            url = f"{base_url}/users?limit=100"
            while url:
                response = session.get(url, headers=headers, timeout=30)
                assert response.status_code == 200, response.text
                page = response.json()
                seen += [user["userId"] for user in page["users"]]
                pages += 1
                cursor = page["nextCursor"]
                url = f"{base_url}/users?limit=100&after={cursor}" if cursor else ""
            with lock:
                writes_during = writes_done - writes_before
        statuses = list(results)
    assert statuses.count(201) == CREATES and statuses.count(204) == DELETES
    # The walk overlapped the writes, or it would prove nothing.
    assert writes_during > 0 and pages > SEEDED // 100 - DELETES // 100
    assert len(seen) == len(set(seen)), "a user was listed twice"
    survivors = set(seeded) - set(doomed)
    missing = survivors - set(seen)
    assert not missing, f"{len(missing)} users that existed throughout were skipped"
    with requests.Session() as session:
        total = session.get(f"{base_url}/users?limit=1", headers=headers, timeout=30).json()
    assert total["total"] == live_count(app) == SEEDED + CREATES - DELETES
