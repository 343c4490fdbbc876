"""The attribute cap under concurrent requests, against a real server with two workers."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from idp.models import UserAttribute, db
from idp.users.attributes import MAX_ATTRIBUTES
from tests.users.conftest import make_self_token
from tests.users.test_attributes import _fill

HELD = MAX_ATTRIBUTES - 5
RACERS = 30


def held(app, user_id: str, *, personal: bool) -> int:
    with app.app_context():
        count = select(func.count()).where(
            UserAttribute.user_id == user_id, UserAttribute.is_personal.is_(personal)
        )
        return db.session.scalar(count) or 0


def race(url: str, headers: dict[str, str]) -> list[int]:
    """RACERS creations of distinct names, released together from as many threads."""
    barrier = threading.Barrier(RACERS)

    def create(index: int) -> int:
        body = {"name": f"racer-{index}", "type": "STRING", "value": "v"}
        with requests.Session() as session:
            barrier.wait(10)
            return session.post(url, json=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(create, range(RACERS)))


def test_concurrent_creations_stop_at_the_cap(app, http, admin, idp_env, live_server) -> None:
    user_id, own = make_self_token(http, app, "racer")
    _fill(app, user_id, personal=False, count=HELD)
    _fill(app, user_id, personal=True, count=HELD)
    base_url = live_server(idp_env, workers=2)
    for personal, url, headers in (
        (False, f"{base_url}/users/{user_id}/attributes", admin),
        (True, f"{base_url}/users/me/attributes", own),
    ):
        statuses = race(url, headers)
        room = MAX_ATTRIBUTES - HELD
        assert Counter(statuses) == {201: room, 409: RACERS - room}
        assert held(app, user_id, personal=personal) == MAX_ATTRIBUTES
