"""``idp serve --server gunicorn``: the same app on gunicorn with gevent workers.

gunicorn stays a supported way to run idp (the ``gunicorn`` extra). A token from it,
then slow clients: twenty connections send a ``POST /oidc/token`` whose body trickles
in at one byte a second. Meanwhile ``/healthz`` is asked every 0.5 s and must answer
every time within 1 s, and a real ``client_credentials`` request must get its token
within 2 s. With gunicorn's sync workers, two such connections stopped both workers
until gunicorn's 30 s timeout, and 20 made ``/healthz`` fail. With
``GUNICORN_CMD_ARGS="-k sync"`` every poll times out; with ``PSYCOPG_WAIT_FUNC=wait_c``
the PostgreSQL test below fails.
"""

from __future__ import annotations

import os
import runpy
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy.engine import make_url

from idp.serving.servers import cores
from tests.oauth.helpers import register
from tests.observability.helpers import lines_once_written
from tests.plugins.servers import LOCALHOST, LiveServerError, free_port

SLOW_CONNECTIONS = 20
SLOW_SECONDS = float(os.environ.get("IDP_TEST_SLOW_SECONDS", "10"))
POLL_INTERVAL = 0.5
HEALTHZ_LIMIT = 1.0
TOKEN_LIMIT = 2.0
# A complete request once all of it has arrived: an unknown client, so 401.
SLOW_BODY = b"grant_type=client_credentials&client_id=slow&client_secret=" + b"s" * 300
SLOW_HEAD = (
    b"POST /oidc/token HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: " + str(len(SLOW_BODY)).encode() + b"\r\n\r\n"
)
CLOSE = {"Connection": "close"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def serve_gunicorn(live_server, env, extra_env=None, timeout: float = 20.0) -> str:
    """``idp serve --server gunicorn`` with its default workers (one per core)."""
    port = free_port()
    argv = [
        sys.executable, "-m", "idp", "serve", "--server", "gunicorn",
        "--host", LOCALHOST, "--port", str(port),
    ]  # fmt: skip
    base_url = f"http://{LOCALHOST}:{port}"
    return live_server.launch(argv, env | (extra_env or {}), base_url, timeout=timeout)


class Trickle:
    """Slow requests: the head at once, then one body byte per connection per second."""

    def __init__(self, base_url: str, count: int) -> None:
        port = int(base_url.rsplit(":", 1)[1])
        self.sockets = [socket.create_connection((LOCALHOST, port), 5) for _ in range(count)]
        for sock in self.sockets:
            sock.sendall(SLOW_HEAD)
        self.sent = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0) and self.sent < len(SLOW_BODY) - 1:
            for number, sock in enumerate(self.sockets):
                try:
                    sock.sendall(SLOW_BODY[self.sent : self.sent + 1])
                except OSError as exc:
                    self.errors.append(f"connection {number}: {exc}")
            self.sent += 1

    def finish(self) -> list[bytes]:
        """Send the rest of every body at once; the status line each connection gets."""
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.sendall(SLOW_BODY[self.sent :])
        return [sock.recv(64).split(b"\r\n", 1)[0] for sock in self.sockets]

    def close(self) -> None:
        self._stop.set()
        for sock in self.sockets:
            sock.close()


def healthz(base_url: str) -> tuple[float, str | None]:
    """Seconds /healthz took on a fresh connection, and what was wrong, if anything."""
    started = time.monotonic()
    try:
        response = requests.get(f"{base_url}/healthz", headers=CLOSE, timeout=HEALTHZ_LIMIT)
    except requests.RequestException as exc:
        return time.monotonic() - started, f"/healthz failed: {exc!r}"
    took = time.monotonic() - started
    if response.status_code != 200 or took >= HEALTHZ_LIMIT:
        return took, f"/healthz answered {response.status_code} in {took:.2f}s"
    return took, None


def test_gunicorn_serves_a_token_and_writes_its_access_line(app, idp_env, live_server):
    client_id, secret = register(app, "client_secret_basic")
    base_url = serve_gunicorn(live_server, idp_env)
    response = requests.post(
        f"{base_url}/oidc/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        headers={"X-Request-ID": "on-gunicorn"},
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["token_type"] == "Bearer"
    assert "gunicorn" in " ".join(live_server.servers[-1].argv)
    wanted = "request_id=on-gunicorn"
    access = lines_once_written(live_server.servers[-1].stdout_path, [wanted])
    assert any(line.startswith('127.0.0.1 "POST /oidc/token" 200 ') for line in access)
    assert any(line.endswith(wanted) for line in access)


def test_slow_request_bodies_do_not_stop_healthz_or_tokens(app, idp_env, live_server):
    client_id, secret = register(app, "client_secret_basic")
    base_url = serve_gunicorn(live_server, idp_env)

    def token() -> str | None:
        started = time.monotonic()
        try:
            response = requests.post(
                f"{base_url}/oidc/token",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
                headers=CLOSE,
                timeout=TOKEN_LIMIT,
            )
        except requests.RequestException as exc:
            return f"token request failed: {exc!r}"
        took = time.monotonic() - started
        if response.status_code != 200 or "access_token" not in response.json():
            return f"token request answered {response.status_code}: {response.text[:200]}"
        return None if took < TOKEN_LIMIT else f"token request took {took:.2f}s"

    # Positive control: the server issues tokens, and answers a slow request once complete.
    assert token() is None
    trickle = Trickle(base_url, SLOW_CONNECTIONS)
    try:
        failures: list[str] = []
        polls = tokens = 0
        slowest = 0.0
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < SLOW_SECONDS:
            poll_started = time.monotonic()
            took, problem = healthz(base_url)
            slowest = max(slowest, took)
            if problem is not None:
                failures.append(f"{elapsed:.1f}s: {problem}")
            polls += 1
            if polls % 6 == 3:  # a token request every 3 s
                tokens += 1
                if (problem := token()) is not None:
                    failures.append(f"{elapsed:.1f}s: {problem}")
            time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - poll_started)))

        print(f"{SLOW_SECONDS:.0f}s: {polls} polls, slowest {slowest:.3f}s, {tokens} tokens")
        # The attack was real: every connection stayed open and kept sending.
        assert trickle.errors == []
        assert trickle.sent >= SLOW_SECONDS - 2
        assert not failures, f"{len(failures)} failures in {polls} polls: {failures}"
        assert polls >= SLOW_SECONDS / POLL_INTERVAL - 2
        assert tokens >= SLOW_SECONDS // 3 - 1
        assert slowest < HEALTHZ_LIMIT
        # The server was holding every slow request: each is answered once complete.
        assert trickle.finish() == [b"HTTP/1.1 401 UNAUTHORIZED"] * SLOW_CONNECTIONS
    finally:
        trickle.close()


@pytest.mark.production_only
def test_a_query_waiting_on_postgresql_lets_its_worker_serve_others(
    app, idp_env, live_server, postgres_server
):
    """psycopg waits cooperatively under gevent, so a blocked query blocks one request.

    Token requests wait on a table lock held by the test; /healthz must still answer.
    With psycopg's C wait function (what a worker gets if psycopg is imported before
    gevent patches ``select``) each blocked request would stop its whole worker.
    """
    client_id, secret = register(app, "client_secret_basic")
    base_url = serve_gunicorn(live_server, idp_env)
    dbname = make_url(idp_env["IDP_DATABASE_URL"]).database
    blocked = 8
    with postgres_server.connect(dbname) as lock:
        lock.execute("LOCK TABLE clients IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(max_workers=blocked) as pool:
            pending = [
                pool.submit(
                    requests.post,
                    f"{base_url}/oidc/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client_id, secret),
                    headers=CLOSE,
                    timeout=30,
                )
                for _ in range(blocked)
            ]
            waiting = _wait_for_lock_waiters(postgres_server, dbname, blocked)
            # With a blocking wait, one waiting query per worker stops the others reaching it.
            assert waiting == blocked, f"{waiting} of {blocked} token requests wait on the lock"
            assert [healthz(base_url)[1] for _ in range(4)] == [None] * 4
            lock.commit()  # releases the table lock
            statuses = [future.result().status_code for future in pending]
    assert statuses == [200] * blocked


def _wait_for_lock_waiters(postgres_server, dbname: str, expected: int) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
    deadline = time.monotonic() + 10
    count = 0
    with postgres_server.connect(dbname, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            count = watcher.execute(query, (dbname,)).fetchone()[0]
            if count >= expected:
                break
            time.sleep(0.1)
    return count


def test_preloading_the_app_with_gevent_workers_is_refused(idp_env, live_server):
    # Loaded in the master, the app would hold real thread locks and psycopg's C wait.
    with pytest.raises(LiveServerError, match="preload_app does not work with gevent workers"):
        serve_gunicorn(live_server, idp_env, {"GUNICORN_CMD_ARGS": "--preload"}, timeout=10)


def test_the_standalone_gunicorn_config_uses_the_same_worker_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the file would set one
    settings = runpy.run_path(str(REPO_ROOT / "config" / "gunicorn.conf.py"))
    assert settings["worker_class"] == "gevent"
    assert settings["preload_app"] is False
    assert settings["keepalive"] == 0
    assert settings["workers"] == cores() >= 1
    assert settings["on_starting"].__module__ == "idp.observability.gunicorn_conf"
