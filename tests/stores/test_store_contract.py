"""One contract, the same tests, for every store implementation.

The database stores run on the profile's database (SQLite embedded, PostgreSQL in
production); the Redis stores run on the session's Redis and only in production. Each test
starts from empty tables and a flushed Redis (the ``app`` fixture). An unreachable backend
is a closed port (or, for SQLite, a file that cannot be created), never a stopped shared
server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine

from idp.models import db
from idp.stores import Revocation, RevocationStore, StoreUnavailable
from idp.stores.database_store import DatabaseRevocationStore
from idp.stores.factory import Stores, build_stores
from idp.stores.redis_store import REVOKED_PREFIX, RedisRevocationStore
from tests.plugins.servers import LOCALHOST, free_port

IMPLEMENTATIONS = [
    pytest.param("database", id="database"),
    pytest.param("redis", id="redis", marks=pytest.mark.production_only),
]
CLAIMERS = 10
KEY = "user:alice"
OTHER_KEY = "sid:family-1"
THIRD_KEY = "client:c-1"


@pytest.fixture(params=IMPLEMENTATIONS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def engine(app: Flask) -> Iterator[Engine]:
    """The profile's migrated, emptied database; ``db.session`` is bound to it meanwhile."""
    with app.app_context():
        yield db.engine
        db.session.rollback()


@pytest.fixture
def stores(kind: str, engine: Engine, redis_url: str | None) -> Iterator[Stores]:
    if kind == "redis":
        assert redis_url, "the Redis stores run in the production profile only"
    built = build_stores(redis_url if kind == "redis" else None, engine)
    # A first read loads a fast path as a running service has it; Redis would otherwise
    # answer every read from the database until then.
    assert built.revocations.latest_revocation(["jti:warm-up"]) is None
    yield built
    if built.redis is not None:
        built.redis.close()


@pytest.fixture
def unreachable(kind: str, engine: Engine, tmp_path: Path) -> Iterator[Stores]:
    """The same implementation, pointed at a backend nobody answers."""
    if kind == "redis":
        # The revocation store's database part stays reachable: only Redis is gone.
        built = build_stores(f"redis://{LOCALHOST}:{free_port()}/0", engine)
        yield built
        assert built.redis is not None
        built.redis.close()
        return
    dead = create_engine(_unreachable_database(engine.url, tmp_path))
    yield build_stores(None, dead)
    dead.dispose()


def _unreachable_database(url: URL, tmp_path: Path) -> URL:
    if url.get_backend_name() == "sqlite":
        # SQLite creates a missing file, but not a missing folder.
        return url.set(database=str(tmp_path / "missing" / "idp.sqlite3"))
    return url.set(host=LOCALHOST, port=free_port())


def _in(seconds: int) -> int:
    return int(time.time()) + seconds


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sleep_past(unix_time: int) -> None:
    time.sleep(max(0.0, unix_time + 0.2 - time.time()))


def _revoke(store: RevocationStore, *revocations: Revocation) -> None:
    store.revoke(db.session(), revocations)
    db.session.commit()


def _forget_fast_path(stores: Stores) -> None:
    """What a Redis restarted without persistence looks like; the database has no fast path."""
    if stores.redis is not None:
        stores.redis.flushall()


# --------------------------------------------------------------------------
# ReplayStore


def test_a_key_is_claimed_once(stores: Stores) -> None:
    assert stores.replay.claim("jti:once", _in(60)) is True
    assert stores.replay.claim("jti:once", _in(60)) is False


def test_a_claim_can_be_made_again_once_it_expired(stores: Stores) -> None:
    # A jti may be reused once its record expired (RFC 7523 §3, item 7).
    expires_at = _in(1)
    assert stores.replay.claim("jti:short", expires_at) is True
    assert stores.replay.claim("jti:short", expires_at) is False
    _sleep_past(expires_at)
    assert stores.replay.claim("jti:short", _in(60)) is True


def test_claims_of_two_keys_are_independent(stores: Stores) -> None:
    assert stores.replay.claim("jti:a", _in(60)) is True
    assert stores.replay.claim("jti:b", _in(60)) is True
    assert stores.replay.claim("jti:a", _in(60)) is False
    assert stores.replay.claim("jti:b", _in(60)) is False


def test_concurrent_claims_of_one_key_let_exactly_one_through(stores: Stores) -> None:
    start = threading.Barrier(CLAIMERS, timeout=30)

    def claim(_: int) -> bool:
        start.wait()
        return stores.replay.claim("jti:raced", _in(60))

    with ThreadPoolExecutor(CLAIMERS) as pool:
        results = list(pool.map(claim, range(CLAIMERS)))
    assert results.count(True) == 1 and results.count(False) == CLAIMERS - 1


def test_a_claim_begun_now_is_answered_later(stores: Stores) -> None:
    pending = stores.replay.begin_claim("jti:later", _in(60))
    other = stores.replay.begin_claim("jti:later", _in(60))
    assert pending.result() is True
    assert other.result() is False


def test_a_discarded_claim_still_spends_its_key_and_leaves_no_reply_behind(
    stores: Stores,
) -> None:
    """A request that fails after its claim was sent never reads the answer: the key is
    spent all the same, and no later claim reads that unread answer as its own (with
    Redis, the kept connection would otherwise hand "fresh" to the replay below)."""
    stores.replay.begin_claim("jti:dropped", _in(60)).discard()
    assert stores.replay.claim("jti:dropped", _in(60)) is False
    assert stores.replay.claim("jti:next", _in(60)) is True


def test_replay_store_ping(stores: Stores) -> None:
    stores.replay.ping()


def test_an_unreachable_replay_store_raises_store_unavailable(unreachable: Stores) -> None:
    with pytest.raises(StoreUnavailable):
        unreachable.replay.claim("jti:lost", _in(60))
    with pytest.raises(StoreUnavailable):
        unreachable.replay.ping()


@pytest.mark.production_only
def test_a_redis_claim_reconnects_once_redis_closed_its_connection(
    engine: Engine, redis_url: str | None
) -> None:
    """A restart or an idle timeout closes the connections the claim keeps: the next claim
    connects again instead of failing; a positive control shows the claims are real."""
    assert redis_url
    stores = build_stores(redis_url, engine)
    admin = redis.Redis.from_url(redis_url)
    try:
        assert stores.replay.claim("jti:before", _in(60)) is True
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        assert stores.replay.claim("jti:after", _in(60)) is True
        assert stores.replay.claim("jti:before", _in(60)) is False
    finally:
        admin.close()
        assert stores.redis is not None
        stores.redis.close()


@pytest.mark.production_only
def test_a_redis_claim_that_timed_out_leaves_no_reply_for_the_next_claim(
    engine: Engine, redis_url: str | None
) -> None:
    """A reply that arrives after its claim gave up must never be read as the answer to
    the next claim on the same connection (here it would say "fresh" for a replay)."""
    assert redis_url
    stores = build_stores(redis_url, engine)
    admin = redis.Redis.from_url(redis_url)
    try:
        assert stores.replay.claim("jti:seen", _in(60)) is True
        admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        with pytest.raises(StoreUnavailable):
            stores.replay.claim("jti:while-paused", _in(60))  # gives up after 1 s
        time.sleep(0.8)  # the pause is over: a late reply would now be waiting
        assert stores.replay.claim("jti:seen", _in(60)) is False
        assert stores.replay.claim("jti:fresh", _in(60)) is True
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
        assert stores.redis is not None
        stores.redis.close()


# --------------------------------------------------------------------------
# RevocationStore


def test_unknown_keys_have_no_revocation(stores: Stores) -> None:
    assert stores.revocations.latest_revocation([KEY, OTHER_KEY]) is None


def test_a_revocation_is_read_back_to_the_millisecond(stores: Stores) -> None:
    revoked_at = _now_ms()
    _revoke(stores.revocations, Revocation(KEY, revoked_at, _in(60)))
    assert stores.revocations.latest_revocation([KEY]) == revoked_at
    assert stores.revocations.latest_revocation([OTHER_KEY]) is None


@pytest.mark.parametrize("later_first", [False, True], ids=["in-order", "out-of-order"])
def test_the_later_of_two_revocations_of_a_key_wins(stores: Stores, later_first: bool) -> None:
    # Two workers may finish their writes in either order.
    earlier = Revocation(KEY, _now_ms(), _in(60))
    later = Revocation(KEY, earlier.revoked_at_ms + 1000, _in(30))
    for revocation in (later, earlier) if later_first else (earlier, later):
        _revoke(stores.revocations, revocation)
    assert stores.revocations.latest_revocation([KEY]) == later.revoked_at_ms
    assert DatabaseRevocationStore(db.engine).latest_revocation([KEY]) == later.revoked_at_ms


def test_a_key_stays_revoked_until_the_later_of_its_expiries(stores: Stores) -> None:
    # The longest access-token lifetime may shrink between two revocations of one key.
    earlier = Revocation(KEY, _now_ms(), _in(3))
    later = Revocation(KEY, earlier.revoked_at_ms + 1000, _in(1))
    _revoke(stores.revocations, earlier)
    _revoke(stores.revocations, later)
    _sleep_past(later.expires_at)
    assert stores.revocations.latest_revocation([KEY]) == later.revoked_at_ms


def test_the_latest_of_several_keys_is_their_maximum(stores: Stores) -> None:
    now = _now_ms()
    _revoke(
        stores.revocations,
        Revocation(KEY, now - 2000, _in(60)),
        Revocation(OTHER_KEY, now, _in(60)),
        Revocation(THIRD_KEY, now - 1000, _in(60)),
    )
    keys = [KEY, OTHER_KEY, THIRD_KEY, "jti:unknown"]
    assert stores.revocations.latest_revocation(keys) == now
    assert stores.revocations.latest_revocation([KEY, THIRD_KEY]) == now - 1000
    assert stores.revocations.latest_revocation([KEY]) == now - 2000


def test_expired_revocations_are_ignored(stores: Stores) -> None:
    now = _now_ms()
    _revoke(
        stores.revocations,
        Revocation(KEY, now, _in(-1)),
        Revocation(OTHER_KEY, now - 1000, _in(60)),
    )
    assert stores.revocations.latest_revocation([KEY]) is None
    assert stores.revocations.latest_revocation([KEY, OTHER_KEY]) == now - 1000


def test_a_rolled_back_revocation_leaves_the_database_and_never_under_revokes(
    stores: Stores,
) -> None:
    """The database part goes with the transaction. A fast path written before the commit
    may keep the revocation (a token refused that could have lived), never lose one."""
    committed = _now_ms()
    _revoke(stores.revocations, Revocation(KEY, committed, _in(60)))
    rolled_back = committed + 1000
    doomed = [Revocation(KEY, rolled_back, _in(60)), Revocation(OTHER_KEY, rolled_back, _in(60))]
    stores.revocations.revoke(db.session(), doomed)
    db.session.rollback()
    database = DatabaseRevocationStore(db.engine)
    assert database.latest_revocation([KEY]) == committed
    assert database.latest_revocation([OTHER_KEY]) is None
    assert stores.revocations.latest_revocation([KEY]) in (committed, rolled_back)
    assert stores.revocations.latest_revocation([OTHER_KEY]) in (None, rolled_back)


def test_revocations_outlive_a_fast_path_that_forgot_them(stores: Stores) -> None:
    before = _now_ms()
    _revoke(stores.revocations, Revocation(KEY, before, _in(60)))
    _forget_fast_path(stores)
    # Written after the loss: the fast path holds this one alone, which must not be trusted.
    _revoke(stores.revocations, Revocation(OTHER_KEY, before + 1000, _in(60)))
    assert stores.revocations.latest_revocation([KEY]) == before
    assert stores.revocations.latest_revocation([OTHER_KEY]) == before + 1000
    assert stores.revocations.latest_revocation([THIRD_KEY]) is None


def test_revocation_store_ping(stores: Stores) -> None:
    stores.revocations.ping()


def test_an_unreachable_revocation_store_raises_store_unavailable(unreachable: Stores) -> None:
    with pytest.raises(StoreUnavailable):
        unreachable.revocations.latest_revocation([KEY])
    with pytest.raises(StoreUnavailable):
        unreachable.revocations.ping()


@pytest.mark.production_only
def test_redis_refills_every_live_revocation_when_its_loaded_marker_is_gone(
    engine: Engine, redis_url: str
) -> None:
    stores = build_stores(redis_url, engine)
    assert stores.redis is not None
    now = _now_ms()
    _revoke(
        stores.revocations,
        Revocation(KEY, now, _in(60)),
        Revocation(OTHER_KEY, now - 1000, _in(60)),
        Revocation(THIRD_KEY, now, _in(-1)),
    )
    stores.redis.flushall()
    assert stores.redis.get(RedisRevocationStore.LOADED) is None
    assert stores.revocations.latest_revocation([KEY]) == now
    # One read refilled every live revocation, not only the keys it asked for.
    assert stores.redis.get(RedisRevocationStore.LOADED) is not None
    assert stores.redis.get(REVOKED_PREFIX + OTHER_KEY) == str(now - 1000).encode()
    assert stores.redis.get(REVOKED_PREFIX + THIRD_KEY) is None
    stores.redis.close()
