"""Storage outages answer 503, never 500, at every endpoint, and service resumes by itself
under real gunicorn workers, a PostgreSQL server or a Redis server stopped under them.
A database that stalls instead (PostgreSQL's processes frozen, SQLite's write lock held
by another writer) costs a request no more than IDP_DATABASE_TIMEOUT.

Each endpoint answers in its surface's format: RFC 6749 ``temporarily_unavailable`` at
/oidc/*, RFC 9457 problem+json at /users…, the readiness report at /readyz; every 503
from /oidc/* and /users… carries ``Retry-After`` (RFC 9110 §10.2.3). In process, in both
profiles: which exceptions count as an outage (503) and which stay a bug (500).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
import requests
from joserfc.jwk import Key
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)

from idp.registrations.cache import CHECK_INTERVAL
from idp.stores import StoreUnavailable
from idp.verify import VerifierUnavailable
from idp.web.problems import PROBLEM_TYPE
from tests.oauth.helpers import PASSWORD, assertion, assertion_form, client_key

SCOPES = "openid user:create user:read user:update user:delete user:self"
CLIENT_SCOPES = "user:create user:read user:update"
USER_SCOPES = "openid user:self"
ROUNDS = 3  # light load: each round sends every request, four at a time
RECOVERY_TIMEOUT = 30.0
TIMEOUT = 30


@dataclass
class Deployment:
    """One idp on its own database: a secret client, a user, and their tokens."""

    base_url: str
    client_id: str
    secret: str
    user_id: str
    client_token: str = ""
    user_token: str = ""
    key_client_id: str = ""
    key: Key | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def client_auth(self) -> tuple[str, str]:
        return (self.client_id, self.secret)

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Call:
    name: str
    surface: str  # "oauth", "problem" or "ready"
    send: Callable[[Deployment], requests.Response]
    success: int = 200


def _cli(run_idp: Any, env: dict[str, str], *args: str, input: str | None = None) -> Any:
    result = run_idp(*args, "--json", input=input, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _provision(run_idp: Any, env: dict[str, str], tmp_path: Path, with_key: bool) -> Deployment:
    """``idp init`` on the database in env, a secret client and a user with a password."""
    _cli(run_idp, env, "init")
    client = _cli(
        run_idp, env, "clients", "create", "--name", "outage", "--auth-method",
        "client_secret_basic", "--grant-types", "client_credentials,password,refresh_token",
        "--scope", SCOPES,
    )  # fmt: skip
    user = _cli(
        run_idp, env, "users", "create", "--username", "outage-user", "--scope", "user:read",
        "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    deployment = Deployment("", client["client_id"], client["client_secret"], user["userId"])
    if with_key:
        deployment.key = client_key()
        jwks_file = tmp_path / "outage-client-jwks.json"
        jwks_file.write_text(json.dumps({"keys": [deployment.key.as_dict(private=False)]}))
        keyed = _cli(
            run_idp, env, "clients", "create", "--name", "outage-keyed", "--auth-method",
            "private_key_jwt", "--jwks-file", str(jwks_file), "--scope", CLIENT_SCOPES,
        )  # fmt: skip
        deployment.key_client_id = keyed["client_id"]
    return deployment


def _token(d: Deployment, **form: str) -> requests.Response:
    return requests.post(d.url("/oidc/token"), data=form, auth=d.client_auth(), timeout=TIMEOUT)


def _login(d: Deployment) -> requests.Response:
    return _token(
        d, grant_type="password", username="outage-user", password=PASSWORD, scope=USER_SCOPES
    )


def _get_tokens(d: Deployment) -> None:
    issued = _token(d, grant_type="client_credentials", scope=CLIENT_SCOPES)
    assert issued.status_code == 200, issued.text
    d.client_token = issued.json()["access_token"]
    login = _login(d)
    assert login.status_code == 200, login.text
    d.user_token = login.json()["access_token"]


def _get(path: str, as_user: bool = False) -> Callable[[Deployment], requests.Response]:
    def send(d: Deployment) -> requests.Response:
        bearer = d.user_token if as_user else d.client_token
        url = d.url(path.format(user_id=d.user_id))
        return requests.get(url, headers=d.bearer(bearer), timeout=TIMEOUT)

    return send


def _create_user(d: Deployment) -> requests.Response:
    body = {"username": f"u-{uuid.uuid4().hex[:12]}", "password": PASSWORD}
    return requests.post(
        d.url("/users"), json=body, headers=d.bearer(d.client_token), timeout=TIMEOUT
    )


def _patch_user(d: Deployment) -> requests.Response:
    body = {"email": f"{uuid.uuid4().hex[:8]}@example.com"}
    url = d.url(f"/users/{d.user_id}")
    return requests.patch(url, json=body, headers=d.bearer(d.client_token), timeout=TIMEOUT)


def _introspect(d: Deployment) -> requests.Response:
    form = {"token": d.client_token}
    return requests.post(
        d.url("/oidc/introspect"), data=form, auth=d.client_auth(), timeout=TIMEOUT
    )


def _revoke(d: Deployment) -> requests.Response:
    # Not a token idp issued: well-formed, so 200 when up, and our own tokens stay usable.
    form = {"token": "not-a-token-" + uuid.uuid4().hex}
    return requests.post(d.url("/oidc/revoke"), data=form, auth=d.client_auth(), timeout=TIMEOUT)


def _key_token(d: Deployment) -> requests.Response:
    assert d.key is not None
    form = assertion_form(assertion(d.key, d.key_client_id), scope="user:read")
    return requests.post(d.url("/oidc/token"), data=form, timeout=TIMEOUT)


TOKEN_CC = Call(
    "token client_credentials",
    "oauth",
    lambda d: _token(d, grant_type="client_credentials", scope=CLIENT_SCOPES),
)
TOKEN_PASSWORD = Call("token password", "oauth", _login)
TOKEN_KEY = Call("token private_key_jwt", "oauth", _key_token)
INTROSPECT = Call("introspect", "oauth", _introspect)
REVOKE = Call("revoke", "oauth", _revoke)
USERINFO = Call("userinfo", "oauth", _get("/oidc/userinfo", as_user=True))
LIST_USERS = Call("GET /users", "problem", _get("/users"))
GET_USER = Call("GET /users/{id}", "problem", _get("/users/{user_id}"))
CREATE_USER = Call("POST /users", "problem", _create_user, success=201)
PATCH_USER = Call("PATCH /users/{id}", "problem", _patch_user)
ME = Call("GET /users/me", "problem", _get("/users/me", as_user=True))
READYZ = Call("GET /readyz", "ready", lambda d: requests.get(d.url("/readyz"), timeout=TIMEOUT))

DATABASE_CALLS = (
    TOKEN_CC, TOKEN_PASSWORD, INTROSPECT, REVOKE, USERINFO,
    LIST_USERS, GET_USER, CREATE_USER, PATCH_USER, ME, READYZ,
)  # fmt: skip
REDIS_CALLS = (TOKEN_KEY, INTROSPECT, USERINFO, LIST_USERS, ME, READYZ)


def _send_all(d: Deployment, calls: tuple[Call, ...]) -> list[tuple[Call, requests.Response]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(zip(calls, pool.map(lambda call: call.send(d), calls), strict=True))


def _check_unavailable(call: Call, response: requests.Response, dead: str) -> None:
    where = f"{call.name}: {response.status_code} {response.text[:300]}"
    assert response.status_code == 503, where
    assert response.headers["Cache-Control"] == "no-store", where
    body = response.json()
    if call.surface == "ready":
        assert body["status"] == "unavailable" and body["checks"][dead] != "ok", where
        return
    retry_after = response.headers.get("Retry-After", "")
    assert retry_after.isdigit() and 0 < int(retry_after) <= 60, where
    if call.surface == "oauth":
        assert response.headers["Content-Type"].startswith("application/json"), where
        assert body["error"] == "temporarily_unavailable", where
        assert isinstance(body["error_description"], str) and body["error_description"], where
    else:
        assert response.headers["Content-Type"].startswith("application/problem+json"), where
        assert body["status"] == 503 and body["title"] == "Service Unavailable", where
        assert body["detail"], where


def _check_working(d: Deployment, calls: tuple[Call, ...]) -> None:
    for call, response in _send_all(d, calls):
        assert response.status_code == call.success, f"{call.name}: {response.text[:300]}"
        if call is INTROSPECT:
            assert response.json()["active"] is True
        if call is USERINFO or call is ME:
            assert response.json()[("sub" if call is USERINFO else "userId")] == d.user_id


def _check_outage(d: Deployment, calls: tuple[Call, ...], dead: str) -> None:
    for _ in range(ROUNDS):
        for call, response in _send_all(d, calls):
            _check_unavailable(call, response, dead)


def _wait_ready(d: Deployment) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    status = None
    while time.monotonic() < deadline:
        status = requests.get(d.url("/readyz"), timeout=TIMEOUT).status_code
        if status == 200:
            return
        time.sleep(0.5)
    pytest.fail(f"/readyz still {status} {RECOVERY_TIMEOUT:.0f}s after the store came back")


@pytest.mark.production_only
def test_a_database_outage_is_503_everywhere_and_service_resumes(
    stoppable_postgres, run_idp, idp_env, live_server, tmp_path
) -> None:
    name = f"outage_{uuid.uuid4().hex[:12]}"
    env = {"IDP_DATABASE_URL": stoppable_postgres.create_database(name)}
    try:
        d = _provision(run_idp, env, tmp_path, with_key=False)
        d.base_url = live_server(idp_env | env, workers=2)
        _get_tokens(d)
        _check_working(d, DATABASE_CALLS)  # every request is right; only the outage differs

        stoppable_postgres.stop()
        # A worker authenticates clients from copies checked less than CHECK_INTERVAL
        # ago without the database; past it, every request needs the database.
        time.sleep(CHECK_INTERVAL + 0.1)
        _check_outage(d, DATABASE_CALLS, dead="database")

        stoppable_postgres.start()  # the same idp processes, no restart
        _wait_ready(d)
        _check_working(d, DATABASE_CALLS)
    finally:
        stoppable_postgres.start()
        live_server.stop_all()
        stoppable_postgres.drop_database(name)


@pytest.mark.production_only
def test_a_redis_outage_is_503_where_redis_is_needed(
    postgres_server, stoppable_redis, run_idp, idp_env, live_server, tmp_path
) -> None:
    name = f"outage_{uuid.uuid4().hex[:12]}"
    env = {
        "IDP_DATABASE_URL": postgres_server.create_database(name),
        "IDP_REDIS_URL": stoppable_redis.url(0),
    }
    try:
        d = _provision(run_idp, env, tmp_path, with_key=True)
        d.base_url = live_server(idp_env | env, workers=2)
        _get_tokens(d)
        _check_working(d, REDIS_CALLS)

        stoppable_redis.stop()
        _check_outage(d, REDIS_CALLS, dead="redis")

        stoppable_redis.start()  # empty, as a Redis without persistence comes back
        _wait_ready(d)
        _check_working(d, REDIS_CALLS)
    finally:
        live_server.stop_all()
        postgres_server.drop_database(name)


# -- a stalled database: every wait is bounded (IDP_DATABASE_TIMEOUT) ----------------------

# IDP_DATABASE_TIMEOUT's default (2 s), plus the time to answer.
STALL_BOUND = 2.5
# A worker runs quick calls on its event loop's thread (idp.serving.asgi): a request that
# arrives during the worker's first stalled call waits for it, then for its own, before
# the worker sends calls to its threads. The kernel spreads connections over the workers,
# so a worker may meet its first stalled call in any round: each may take two waits.
TWO_WAITS_BOUND = 2 * 2 + 0.5
FROZEN_CALLS = (TOKEN_PASSWORD, CREATE_USER, GET_USER, READYZ)
SQLITE_WRITES = (CREATE_USER, PATCH_USER)
SQLITE_READS = (GET_USER, READYZ)


def _check_unavailable_within(d: Deployment, calls: tuple[Call, ...], bound: float) -> None:
    for call, response in _send_all(d, calls):
        _check_unavailable(call, response, dead="database")
        took = response.elapsed.total_seconds()
        assert took <= bound, f"{call.name}: 503 after {took:.2f}s, more than {bound}s"


@pytest.mark.production_only  # stops PostgreSQL's processes; SQLite's stall is the next test
def test_a_frozen_database_is_503_within_the_bound_and_service_resumes(
    stoppable_postgres, run_idp, idp_env, live_server, tmp_path
) -> None:
    name = f"frozen_{uuid.uuid4().hex[:12]}"
    env = {"IDP_DATABASE_URL": stoppable_postgres.create_database(name)}
    try:
        d = _provision(run_idp, env, tmp_path, with_key=False)
        d.base_url = live_server(idp_env | env, workers=2)
        _get_tokens(d)
        _check_working(d, FROZEN_CALLS)

        with stoppable_postgres.frozen():  # connections stay open; no answer comes back
            time.sleep(CHECK_INTERVAL + 0.1)  # past the copies of clients a worker may use
            # The first round waits on connections the workers hold, whose queries get no
            # answer; the second on new ones, whose start-up gets none.
            for _ in range(2):
                _check_unavailable_within(d, FROZEN_CALLS, TWO_WAITS_BOUND)

        _wait_ready(d)  # the same idp processes, no restart
        _check_working(d, FROZEN_CALLS)
    finally:
        live_server.stop_all()
        stoppable_postgres.drop_database(name)


def test_a_write_behind_a_held_sqlite_lock_is_503_within_the_bound(
    profile, run_idp, idp_env, live_server, tmp_path
) -> None:
    """SQLite's stall: another writer keeps its one write lock. Reads go on (WAL)."""
    if profile == "production":
        pytest.skip("SQLite only, which the embedded profile runs; PostgreSQL's is above")
    path = tmp_path / "locked.sqlite3"
    env = {"IDP_DATABASE_URL": f"sqlite:///{path}"}
    d = _provision(run_idp, env, tmp_path, with_key=False)
    d.base_url = live_server(idp_env | env, workers=2)
    _get_tokens(d)
    _check_working(d, SQLITE_WRITES + SQLITE_READS)

    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        for call in SQLITE_WRITES:  # one at a time: a waiting write holds up its worker
            _check_unavailable_within(d, (call,), STALL_BOUND)
        for call in SQLITE_READS:
            response = call.send(d)
            assert response.status_code == 200, f"{call.name}: {response.text[:300]}"
    finally:
        holder.close()

    _check_working(d, SQLITE_WRITES + SQLITE_READS)


# -- which errors are outages: in process, both profiles -----------------------------------


def _driver_error(cls: type[DBAPIError], invalidated: bool = False) -> DBAPIError:
    return cls("SELECT 1", {}, Exception("driver message"), connection_invalidated=invalidated)


OUTAGES = {
    "operational": lambda: _driver_error(OperationalError),
    "interface": lambda: _driver_error(InterfaceError),
    "invalidated": lambda: _driver_error(DBAPIError, invalidated=True),
    "redis-connection": lambda: redis.exceptions.ConnectionError("refused"),
    "redis-timeout": lambda: redis.exceptions.TimeoutError("timed out"),
    "store": lambda: StoreUnavailable("redis: ConnectionError"),
    "verifier": lambda: VerifierUnavailable("revocation store unreachable"),
}
BUGS = {
    "integrity": lambda: _driver_error(IntegrityError),
    "programming": lambda: _driver_error(ProgrammingError),
    "dbapi-live-connection": lambda: _driver_error(DBAPIError),
    "redis-response": lambda: redis.exceptions.ResponseError("WRONGTYPE"),
    "runtime": lambda: RuntimeError("a bug"),
}
# Where each surface first touches storage, so a raised error stands for a failed store.
SURFACES = {
    "token": ("idp.oauth.views.check_oauth_request", "post", "/oidc/token", "oauth"),
    "userinfo": ("idp.oauth.views.authenticate", "get", "/oidc/userinfo", "oauth"),
    "users": ("idp.web.json_api.authenticate", "get", "/users", "problem"),
    "users-me": ("idp.web.json_api.authenticate", "get", "/users/me", "problem"),
}


def _raise(make: Callable[[], Exception]) -> Callable[..., Any]:
    def fail(*_: Any, **__: Any) -> Any:
        raise make()

    return fail


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("error", OUTAGES)
def test_storage_errors_are_503_with_retry_after(app, monkeypatch, surface, error) -> None:
    target, method, path, kind = SURFACES[surface]
    monkeypatch.setattr(target, _raise(OUTAGES[error]))
    response = getattr(app.test_client(), method)(path)
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    if kind == "oauth":
        assert response.mimetype == "application/json"
        assert body["error"] == "temporarily_unavailable"
    else:
        assert response.mimetype == PROBLEM_TYPE
        assert (body["status"], body["title"]) == (503, "Service Unavailable")
    assert "driver message" not in response.get_data(as_text=True)


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("error", BUGS)
def test_other_errors_stay_500(app, monkeypatch, surface, error) -> None:
    target, method, path, kind = SURFACES[surface]
    monkeypatch.setattr(target, _raise(BUGS[error]))
    response = getattr(app.test_client(), method)(path)
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    expected = "application/json" if kind == "oauth" else PROBLEM_TYPE
    assert response.mimetype == expected
