"""The test-infrastructure layer itself: profiles, real servers, live_server."""

from __future__ import annotations

import socket
import sys
import uuid

import pytest

from tests.plugins import servers
from tests.plugins.servers import RESERVED_PORTS, LiveServerError, free_port

SERVER_FIXTURES = {
    "postgres_server",
    "redis_server",
    "stoppable_postgres",
    "stoppable_redis",
    "idp_postgresql_proc",
    "idp_stoppable_postgresql_proc",
    "idp_redis_proc",
    "postgresql_proc",
    "redis_proc",
}


def test_profile_fixture_matches_command_line(profile: str, pytestconfig: pytest.Config) -> None:
    assert profile in ("embedded", "production")
    assert profile == pytestconfig.getoption("idp_profile")


def test_no_server_fixture_is_requested_automatically(request: pytest.FixtureRequest) -> None:
    # request.fixturenames holds this test's whole closure, autouse fixtures
    # included: nothing may pull a server into a test that did not ask for one.
    assert not SERVER_FIXTURES & set(request.fixturenames)


def test_embedded_profile_starts_no_server(profile: str, pytestconfig: pytest.Config) -> None:
    if profile != "embedded":
        assert profile == "production"
        return
    header = servers.pytest_report_header(pytestconfig)
    assert header.startswith("idp profile: embedded")
    # The binaries are wired for tests that explicitly ask for a server ...
    assert pytestconfig.getoption("postgresql_exec") == str(servers.PG_CTL_WRAPPER)


def test_free_port_is_bindable_and_never_a_system_service_port() -> None:
    port = free_port()
    assert port not in RESERVED_PORTS
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_live_server_reports_stderr_tail_when_the_server_dies(live_server) -> None:
    argv = [sys.executable, "-c", "import sys; sys.stderr.write('boom: no config\\n'); sys.exit(3)"]
    with pytest.raises(LiveServerError) as info:
        live_server.launch(argv, {}, f"http://127.0.0.1:{free_port()}", timeout=10)
    assert "exited with status 3" in str(info.value)
    assert "boom: no config" in str(info.value)


def test_live_server_gives_up_after_the_deadline(live_server) -> None:
    argv = [
        sys.executable,
        "-c",
        "import sys, time; sys.stderr.write('still booting\\n'); time.sleep(60)",
    ]
    with pytest.raises(LiveServerError) as info:
        live_server.launch(argv, {}, f"http://127.0.0.1:{free_port()}", timeout=1)
    assert "did not answer 200" in str(info.value)
    assert "still booting" in str(info.value)
    assert live_server.servers[-1].process.poll() is not None  # stopped, not leaked


@pytest.mark.production_only
def test_profile_is_production_in_production_run(profile: str, pytestconfig: pytest.Config) -> None:
    assert profile == "production"
    assert "PostgreSQL" in servers.pytest_report_header(pytestconfig)


@pytest.mark.production_only
def test_postgres_server_answers(postgres_server) -> None:
    assert postgres_server.host == "127.0.0.1"
    assert postgres_server.port not in RESERVED_PORTS
    name = f"plugin_check_{uuid.uuid4().hex[:8]}"
    url = postgres_server.create_database(name)
    assert url == (
        f"postgresql+psycopg://{postgres_server.user}:{postgres_server.password}"
        f"@127.0.0.1:{postgres_server.port}/{name}"
    )
    with postgres_server.connect(name) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        assert version.startswith("PostgreSQL ")
        assert conn.execute("SELECT current_database()").fetchone()[0] == name
    postgres_server.drop_database(name)


@pytest.mark.production_only
def test_postgres_url_works_with_sqlalchemy(postgres_server) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_server.url("postgres"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.production_only
def test_redis_server_answers(redis_server) -> None:
    assert redis_server.port not in RESERVED_PORTS
    assert redis_server.url(3) == f"redis://127.0.0.1:{redis_server.port}/3"
    client = redis_server.client(3)
    try:
        assert client.ping() is True
        key = f"plugin-check-{uuid.uuid4().hex}"
        assert client.set(key, "1", nx=True, ex=30) is True
        assert client.set(key, "1", nx=True, ex=30) is None
        assert client.get(key) == b"1"
        assert int(client.info("server")["tcp_port"]) == redis_server.port
    finally:
        client.close()


@pytest.mark.production_only
def test_production_profile_used_both_servers(postgres_server, redis_server, pytestconfig) -> None:
    used = servers._state(pytestconfig).used
    assert used["PostgreSQL"] == ("127.0.0.1", postgres_server.port)
    assert used["Redis"] == ("127.0.0.1", redis_server.port)
    assert postgres_server.executor.running()
    assert redis_server.executor.running()


@pytest.mark.production_only
def test_stoppable_redis_can_be_taken_down(stoppable_redis, redis_server) -> None:
    import redis

    assert stoppable_redis.port != redis_server.port
    client = stoppable_redis.client(socket_timeout=2, socket_connect_timeout=2)
    try:
        assert client.ping() is True
        stoppable_redis.stop()
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
        stoppable_redis.start()
        assert client.ping() is True
        stoppable_redis.stop()  # left down: the fixture must cope
    finally:
        client.close()
    assert redis_server.client().ping() is True  # the session server is untouched


@pytest.mark.production_only
def test_stoppable_postgres_can_be_taken_down(stoppable_postgres, postgres_server) -> None:
    import psycopg

    assert stoppable_postgres.port != postgres_server.port
    with stoppable_postgres.connect() as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    stoppable_postgres.stop()
    assert not stoppable_postgres.is_running()
    with pytest.raises(psycopg.OperationalError):
        stoppable_postgres.connect(connect_timeout=2)
    with postgres_server.connect() as conn:  # the session server is untouched
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    # left down on purpose: the next test gets it running again


@pytest.mark.production_only
def test_stoppable_postgres_is_running_again_for_the_next_test(stoppable_postgres) -> None:
    assert stoppable_postgres.is_running()
    with stoppable_postgres.connect() as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1
