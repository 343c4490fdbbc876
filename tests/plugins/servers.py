"""Storage profiles and real servers for the test suite.

Loaded from ``tests/conftest.py`` (``pytest_plugins = ["tests.plugins.servers"]``).

The suite runs twice (``make test``):

* ``--profile embedded`` (default): SQLite and the database replay cache. No
  server is started unless a test asks for one of the fixtures below.
* ``--profile production``: PostgreSQL + Redis, each a private server started
  by pytest-postgresql / pytest-redis on a free port (never 5432 or 6379, so
  the system services the Debian packages start are never touched). A missing
  binary is a usage error: the run fails, it never skips.

PostgreSQL refuses to run as root, so pytest-postgresql is pointed at
``tests/support/pg_ctl``, a wrapper that drops to the ``postgres`` user when
needed and otherwise execs the real pg_ctl.

Fixtures (see the README section of each for details):

``profile``                 session  "embedded" or "production"
``postgres_server``         session  :class:`PostgresServer`
``redis_server``            session  :class:`RedisServer`
``stoppable_postgres``      function :class:`StoppablePostgres` (separate cluster)
``stoppable_redis``         function :class:`StoppableRedis` (separate process)
``live_server``             function :class:`LiveServerFactory`,
                                     ``live_server(env, workers=2) -> base_url``

Helpers: :func:`free_port`.

Tests marked ``production_only`` are skipped in the embedded profile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import port_for
import pytest
from pytest_postgresql import factories as pg_factories
from pytest_redis import factories as redis_factories
from pytest_redis.config import get_config as redis_config
from pytest_redis.executor import RedisExecutor

PROFILES = ("embedded", "production")
REPO_ROOT = Path(__file__).resolve().parents[2]
PG_CTL_WRAPPER = REPO_ROOT / "tests" / "support" / "pg_ctl"
ENSURE_SERVERS = "tests/support/ensure-servers"
LOCALHOST = "127.0.0.1"
# The system services of the Debian packages listen here; tests never do.
RESERVED_PORTS = frozenset({5432, 6379})
PG_USER = "postgres"
PG_PASSWORD = "idp-test-password"
SERVER_START_TIMEOUT = 20.0


# --------------------------------------------------------------------------
# plugin state


@dataclasses.dataclass
class _State:
    profile: str
    redis_exec: str | None = None
    redis_version: str | None = None
    pg_version: str | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    # name -> (host, port) of the session servers that were started
    used: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)


_STATE = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("idp", "idp storage profiles")
    group.addoption(
        "--profile",
        action="store",
        dest="idp_profile",
        choices=PROFILES,
        default="embedded",
        help="storage profile: embedded (SQLite, no Redis; default) or "
        "production (PostgreSQL + Redis started on free ports)",
    )


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _find_redis(config: pytest.Config) -> str | None:
    explicit = config.getoption("redis_exec", default=None)
    candidates = [explicit] if explicit else []
    candidates += [
        shutil.which("redis-server"),
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _run_version(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return False, str(exc)
    except subprocess.TimeoutExpired:
        return False, f"{argv[0]} --version timed out"
    if done.returncode != 0:
        return False, _first_line(done.stderr or done.stdout) or f"exit status {done.returncode}"
    return True, done.stdout


def _probe_redis(state: _State) -> None:
    if state.redis_exec is None:
        state.problems.append("redis-server not found (PATH, /usr/bin, /usr/local/bin)")
        return
    ok, out = _run_version([state.redis_exec, "--version"])
    match = re.search(r"v=(\S+)", out) if ok else None
    if not ok:
        state.problems.append(f"{state.redis_exec} --version failed: {out}")
    else:
        state.redis_version = match.group(1) if match else _first_line(out)


def _probe_postgres(state: _State) -> None:
    if not os.access(PG_CTL_WRAPPER, os.X_OK):
        state.problems.append(f"{PG_CTL_WRAPPER} is missing or not executable")
        return
    ok, out = _run_version([str(PG_CTL_WRAPPER), "--version"])
    if not ok:
        state.problems.append(f"PostgreSQL pg_ctl not usable: {out}")
        return
    match = re.search(r"\(PostgreSQL\)\s+(\S+)", out)
    state.pg_version = match.group(1) if match else _first_line(out)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            state.problems.append(
                "running as root but there is no 'postgres' system user to run PostgreSQL as"
            )


def pytest_configure(config: pytest.Config) -> None:
    state = _State(profile=config.getoption("idp_profile", default="embedded") or "embedded")
    config.stash[_STATE] = state

    # Point pytest-redis / pytest-postgresql at the binaries, in every profile,
    # so that a test asking for a server in the embedded profile gets one too.
    state.redis_exec = _find_redis(config)
    if state.redis_exec:
        config.option.redis_exec = state.redis_exec
    if not config.getoption("postgresql_exec", default=None):
        config.option.postgresql_exec = str(PG_CTL_WRAPPER)

    if state.profile == "production":
        _probe_redis(state)
        _probe_postgres(state)
        if state.problems:
            raise pytest.UsageError(
                "--profile production cannot run: "
                + "; ".join(state.problems)
                + f". Run {ENSURE_SERVERS} (as root it installs redis-server and postgresql)."
            )


def pytest_report_header(config: pytest.Config) -> str:
    state = _state(config)
    if state.profile == "production":
        return (
            f"idp profile: production (PostgreSQL {state.pg_version} via pg_ctl wrapper, "
            f"redis-server {state.redis_version})"
        )
    return "idp profile: embedded (SQLite, database replay cache; no PostgreSQL or Redis)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _state(config).profile == "production":
        return
    skip = pytest.mark.skip(reason="production_only: runs with --profile production")
    for item in items:
        if item.get_closest_marker("production_only") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    if state.used:
        parts = [f"{name} on {host}:{port}" for name, (host, port) in state.used.items()]
        verb = "were" if len(parts) > 1 else "was"
        terminalreporter.write_line(
            f"idp profile {state.profile}: {' and '.join(parts)} {verb} used"
        )
    elif state.profile == "production":
        terminalreporter.write_line(
            "idp profile production: no test started PostgreSQL or Redis", yellow=True
        )


@pytest.fixture(scope="session")
def profile(pytestconfig: pytest.Config) -> str:
    """The storage profile of this run: "embedded" or "production"."""
    return _state(pytestconfig).profile


# --------------------------------------------------------------------------
# helpers


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port on host that is free right now (never 5432 or 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def _pick_server_port() -> int:
    """A free port from port-for's unassigned, non-ephemeral ranges."""
    while True:
        port = port_for.get_port(None)
        if port is not None and port not in RESERVED_PORTS:
            return port


def _need_binary(config: pytest.Config, what: str) -> None:
    state = _state(config)
    if what == "redis" and not state.redis_exec:
        pytest.fail(f"redis-server not found; run {ENSURE_SERVERS}", pytrace=False)
    if what == "postgres" and not os.access(PG_CTL_WRAPPER, os.X_OK):
        pytest.fail(f"{PG_CTL_WRAPPER} is not executable", pytrace=False)


# --------------------------------------------------------------------------
# PostgreSQL


@dataclasses.dataclass
class PostgresServer:
    """A running PostgreSQL server (superuser credentials)."""

    host: str
    port: int
    user: str
    password: str
    executor: Any = dataclasses.field(repr=False, compare=False)

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL: ``postgresql+psycopg://user:pw@host:port/dbname``."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg connection (caller closes it)."""
        import psycopg

        kwargs.setdefault("connect_timeout", 5)
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            **kwargs,
        )

    def create_database(self, name: str) -> str:
        """(Re)create database ``name`` (dropping an old one) and return its URL."""
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class _Stoppable:
    """Stop and start for a server fixture whose process a test may take down."""

    executor: Any

    def is_running(self) -> bool:
        return bool(self.executor.running())

    def stop(self) -> None:
        """Stop the server; connections fail until start()."""
        if self.is_running():
            self.executor.stop()

    def start(self) -> None:
        if not self.is_running():
            self.executor.start()


class StoppablePostgres(_Stoppable, PostgresServer):
    """A PostgreSQL server a test may stop (and start again), or freeze."""

    def _postmaster_pid(self) -> int:
        pid_file = Path(self.executor.datadir) / "postmaster.pid"
        return int(pid_file.read_text().splitlines()[0])

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Every server process stopped (SIGSTOP), as in a fail-over or a storage stall.

        Its sockets stay open and the kernel still acknowledges what clients send: only
        the answers stop. The postmaster goes first, so that no new backend is forked.
        """
        postmaster = self._postmaster_pid()
        pids = [postmaster]
        os.kill(postmaster, signal.SIGSTOP)
        try:
            children = subprocess.run(
                ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=True
            ).stdout.split()
            for pid in map(int, children):
                pids.append(pid)
                os.kill(pid, signal.SIGSTOP)
            yield
        finally:
            for pid in reversed(pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


def _postgres_from(executor: Any, cls: type[PostgresServer] = PostgresServer) -> PostgresServer:
    assert executor.port not in RESERVED_PORTS, executor.port
    return cls(
        host=executor.host,
        port=int(executor.port),
        user=executor.user,
        password=executor.password,
        executor=executor,
    )


# pytest-postgresql process fixtures (session scoped, by the factory's design).
idp_postgresql_proc = pg_factories.postgresql_proc(
    executable=str(PG_CTL_WRAPPER), host=LOCALHOST, port=None, user=PG_USER, password=PG_PASSWORD
)
idp_stoppable_postgresql_proc = pg_factories.postgresql_proc(
    executable=str(PG_CTL_WRAPPER), host=LOCALHOST, port=None, user=PG_USER, password=PG_PASSWORD
)


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> PostgresServer:
    """The session's PostgreSQL server (pytest-postgresql, free port, superuser)."""
    _need_binary(pytestconfig, "postgres")
    server = _postgres_from(request.getfixturevalue("idp_postgresql_proc"))
    _state(pytestconfig).used["PostgreSQL"] = (server.host, server.port)
    return server


@pytest.fixture
def stoppable_postgres(
    pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> Iterator[StoppablePostgres]:
    """A separate PostgreSQL cluster the test may ``.stop()``.

    initdb takes seconds, so the cluster process is session scoped (one
    pytest-postgresql process fixture); this function-scoped fixture hands it
    out running and, after the test, starts it again if the test stopped it.
    Databases therefore survive between tests: create your own with
    ``create_database`` under a unique name.
    """
    _need_binary(pytestconfig, "postgres")
    server = _postgres_from(
        request.getfixturevalue("idp_stoppable_postgresql_proc"), StoppablePostgres
    )
    assert isinstance(server, StoppablePostgres)
    server.start()
    yield server
    server.start()


# --------------------------------------------------------------------------
# Redis


@dataclasses.dataclass
class RedisServer:
    """A running Redis server."""

    host: str
    port: int
    executor: Any = dataclasses.field(repr=False, compare=False)

    def url(self, db: int = 0) -> str:
        """``redis://host:port/db``."""
        return f"redis://{self.host}:{self.port}/{db}"

    def client(self, db: int = 0, **kwargs: Any) -> Any:
        """A redis-py client for database db."""
        import redis

        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 5)
        return redis.Redis.from_url(self.url(db), **kwargs)


class StoppableRedis(_Stoppable, RedisServer):
    """A throwaway Redis server a test may stop (and start again)."""


idp_redis_proc = redis_factories.redis_proc(host=LOCALHOST, port=None)


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> RedisServer:
    """The session's Redis server (pytest-redis, free port)."""
    _need_binary(pytestconfig, "redis")
    executor = request.getfixturevalue("idp_redis_proc")
    assert executor.port not in RESERVED_PORTS, executor.port
    server = RedisServer(host=executor.host, port=int(executor.port), executor=executor)
    _state(pytestconfig).used["Redis"] = (server.host, server.port)
    return server


@pytest.fixture
def stoppable_redis(
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StoppableRedis]:
    """A fresh redis-server for this test only, which the test may ``.stop()``.

    Built from pytest-redis's RedisExecutor (its process factory is session
    scoped only); starting Redis takes milliseconds.
    """
    _need_binary(pytestconfig, "redis")
    cfg = redis_config(request)
    executor = RedisExecutor(
        executable=_state(pytestconfig).redis_exec or cfg.exec,
        databases=cfg.db_count,
        redis_timeout=cfg.timeout,
        loglevel=cfg.loglevel,
        host=LOCALHOST,
        port=_pick_server_port(),
        save=cfg.save or "",
        rdbcompression=cfg.compression,
        rdbchecksum=cfg.rdbchecksum,
        syslog_enabled=cfg.syslog,
        startup_timeout=60,
        datadir=tmp_path_factory.mktemp("stoppable-redis"),
    )
    executor.start()
    try:
        yield StoppableRedis(host=LOCALHOST, port=int(executor.port), executor=executor)
    finally:
        if executor.running():
            executor.stop()


# --------------------------------------------------------------------------
# live idp server


class LiveServerError(RuntimeError):
    """The server did not come up; the message carries its stderr tail."""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output captured)"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty)"


class LiveServer:
    """One server process started by :class:`LiveServerFactory`."""

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        base_url: str,
        health_path: str = "/healthz",
    ) -> None:
        self.argv = argv
        self.base_url = base_url
        self.health_url = base_url + health_path
        self.cwd = cwd
        self.stdout_path = cwd / "server.stdout.log"
        self.stderr_path = cwd / "server.stderr.log"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def stderr_tail(self, lines: int = 40) -> str:
        return _tail(self.stderr_path, lines)

    def wait_healthy(self, timeout: float = SERVER_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise LiveServerError(
                    f"server exited with status {code} before {self.health_url} answered;\n"
                    f"command: {' '.join(self.argv)}\nstderr tail:\n{self.stderr_tail()}"
                )
            try:
                with urllib.request.urlopen(self.health_url, timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
                    last_error = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(getattr(exc, "reason", exc))
            time.sleep(0.1)
        self.stop()
        raise LiveServerError(
            f"{self.health_url} did not answer 200 within {timeout:.0f}s (last: {last_error});\n"
            f"command: {' '.join(self.argv)}\nstderr tail:\n{self.stderr_tail()}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to grace seconds, then SIGKILL the whole process group."""
        proc = self.process
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stray workers, if any
        if proc.poll() is None:
            proc.wait(timeout=grace)


class LiveServerFactory:
    """``live_server(env, workers=2) -> base_url``: run ``python -m idp serve``.

    ``env`` is merged over ``os.environ``; the repository root is put first on
    PYTHONPATH so the server runs the same code as the tests. Each server gets
    its own working directory (so relative defaults like ``instance/`` land in
    a temp dir) unless ``cwd`` is given. All servers are stopped at teardown.
    ``.servers`` lists the :class:`LiveServer` objects (process, logs, stop()).
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self.servers: list[LiveServer] = []

    def __call__(
        self,
        env: Mapping[str, str] | None = None,
        workers: int = 2,
        *,
        port: int | None = None,
        cwd: str | Path | None = None,
        timeout: float = SERVER_START_TIMEOUT,
    ) -> str:
        port = port or free_port()
        argv = [
            sys.executable, "-m", "idp", "serve",
            "--host", LOCALHOST, "--port", str(port), "--workers", str(workers),
        ]  # fmt: skip
        return self.launch(argv, env, f"http://{LOCALHOST}:{port}", cwd=cwd, timeout=timeout)

    def launch(
        self,
        argv: list[str],
        env: Mapping[str, str] | None,
        base_url: str,
        *,
        cwd: str | Path | None = None,
        timeout: float = SERVER_START_TIMEOUT,
    ) -> str:
        """Start any command that serves base_url + /healthz (used by __call__)."""
        merged = dict(os.environ)
        merged["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        merged["PYTHONUNBUFFERED"] = "1"
        merged.update({key: str(value) for key, value in (env or {}).items()})
        workdir = Path(cwd) if cwd is not None else self._tmp.mktemp("live-server")
        server = LiveServer(argv, merged, workdir, base_url)
        self.servers.append(server)
        server.wait_healthy(timeout)
        return server.base_url

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServerFactory]:
    """Factory fixture: ``base_url = live_server({"IDP_...": "..."}, workers=2)``."""
    factory = LiveServerFactory(tmp_path_factory)
    try:
        yield factory
    finally:
        factory.stop_all()
