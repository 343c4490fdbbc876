"""Which stores a Redis URL selects; building them connects to nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from idp.errors import ConfigurationError
from idp.stores.database_store import DatabaseReplayStore, DatabaseRevocationStore
from idp.stores.factory import REDIS_TIMEOUT_SECONDS, build_stores
from idp.stores.redis_store import RedisReplayStore, RedisRevocationStore


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    yield engine
    engine.dispose()


@pytest.mark.parametrize("url", [None, ""])
def test_without_a_redis_url_the_database_does_both_jobs(engine: Engine, url: str | None) -> None:
    stores = build_stores(url, engine)
    assert isinstance(stores.replay, DatabaseReplayStore)
    assert isinstance(stores.revocations, DatabaseRevocationStore)
    assert stores.replay.engine is engine and stores.revocations.engine is engine
    assert stores.redis is None


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/no-redis.sock"]
)
def test_a_redis_url_selects_the_redis_stores(engine: Engine, url: str) -> None:
    stores = build_stores(url, engine)
    assert isinstance(stores.replay, RedisReplayStore)
    assert isinstance(stores.revocations, RedisRevocationStore)
    assert stores.redis is not None
    assert stores.replay.client is stores.redis and stores.revocations.client is stores.redis
    # Revocations are written through to the database.
    assert stores.revocations.database.engine is engine
    options = stores.redis.connection_pool.connection_kwargs
    assert options["socket_timeout"] == REDIS_TIMEOUT_SECONDS
    assert options["socket_connect_timeout"] == REDIS_TIMEOUT_SECONDS
    stores.redis.close()


def test_an_unknown_scheme_is_a_configuration_error_that_hides_the_url(engine: Engine) -> None:
    with pytest.raises(ConfigurationError, match="memcached://") as raised:
        build_stores("memcached://user:s3cret@127.0.0.1:11211", engine)
    assert "s3cret" not in str(raised.value)
