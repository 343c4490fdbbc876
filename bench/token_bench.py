"""Token endpoint benchmark: idp (production profile) against node-oidc-provider and a ceiling.

In one run, the same load generator (wrk with bench/token_bench.lua) measures
``POST /oidc/token`` (client_credentials) and ``GET /oidc/jwks`` of:

* ``idp``: ``python -m idp serve --server granian --workers W`` of this working tree
  (granian's ASGI interface, idp.serving.asgi.WsgiBridge), with a private PostgreSQL
  (initdb into a temporary directory through tests/support/pg_ctl) and a private
  redis-server, both on free loopback ports; clients made with the CLI;
* ``idp-gunicorn``: ``python -m idp serve --server gunicorn`` (gevent workers), on the
  same database and its own Redis database (its own replay store);
* ``idp-granian-wsgi`` (not by default): granian's WSGI interface serving idp.wsgi:app
  with idp's granian flags, to compare the bridge with granian's own WSGI path;
* ``node``: node-oidc-provider 8 (bench/node/server.js), one process, configured the
  same way (client_credentials, private_key_jwt ES256/RS256, client_secret_basic, JWT
  access tokens through resource indicators, replay detection in memory);
* ``node-cluster``: the same in N processes (node's cluster module), replay detection
  in the same private Redis (workers share no memory);
* ``ceiling``: bench/ceiling_app.py, Flask + joserfc with no storage, served as idp is
  (granian, idp's flags, idp's WsgiBridge: bench/ceiling_asgi.py) or, with
  ``--ceiling-server gunicorn``, with idp's gunicorn settings;
* ``ceiling-replay``: the same app with idp's Redis replay check (idp's
  ``RedisReplayStore`` on the same private Redis, counted in its CPU), private_key_jwt
  scenarios only: what cross-process replay safety costs on this stack by itself.

All of them use the same issuer, client_ids, client keys and secret, so one pool of
pre-signed client assertions (unique ``jti`` each) serves them all; a server never
sees an assertion twice, except in the replay check. Every round measures each server
once per scenario, one after the other (the order flips every round), and the report
gives medians and every ratio per round (bench_summary.py), then each server's memory
after the last round (proc_memory.py). Scenarios: private_key_jwt ES256 and RS256,
client_secret_basic, GET /oidc/jwks, and the password grant (idp servers only). See
bench/README.md.

Usage (from the repository root)::

    .venv/bin/python bench/token_bench.py [--quick | --full] [--rounds R]
        [--connections 32] [--duration S] [--warmup S] [--servers idp,node,...]
        [--scenarios ...] [--ceiling-server granian|gunicorn] [--py-spy S]
        [--idp-args "..."] [--ceiling-args "..."] [--record] [--output PATH]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from bench_summary import summary
from password_grant import free_port
from proc_memory import TreeMemory, tree_memory
from profile_summary import largest_costs, top_functions

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
NODE_DIR = BENCH / "node"
LUA_SCRIPT = BENCH / "token_bench.lua"
RESULTS = BENCH / "RESULTS.md"
PG_CTL = REPO / "tests" / "support" / "pg_ctl"
HOST = "127.0.0.1"
SCOPE = "user:read"
PASSWORD_SCOPE = "user:self"  # noqa: S105 -- a scope, not a secret
USERNAME = "bench"
PASSWORD = "Bench-Password-1"  # noqa: S105 -- a throw-away user on a throw-away server
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN_TTL = 3600
CLOCK_SKEW = 30
# Pre-signed assertions must outlive the run: idp's limit on exp - iat is raised to
# this for the benchmark (it only widens the validation window and the replay TTL).
ASSERTION_LIFETIME = 3600
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOG_TAIL = 30
REPLAY_DISTANCE = 2500  # other requests between first use and the late replay
DEFAULT_CONNECTIONS = "32"
DEFAULT_SCENARIOS = "es256,basic"
DEFAULT_ROUNDS = 3
FULL_CONNECTIONS = "8,32,64"

SERVERS = (
    "idp", "idp-gunicorn", "idp-granian-wsgi", "node", "node-cluster", "ceiling", "ceiling-replay",
)  # fmt: skip
DEFAULT_SERVERS = tuple(name for name in SERVERS if name != "idp-granian-wsgi")
# Servers sharing the private Redis each use their own database: a pre-signed assertion
# one server has claimed would otherwise be a replay for the next ("jti already used").
REDIS_DB = {"idp": 0, "node-cluster": 1, "ceiling-replay": 2, "idp-gunicorn": 3,
            "idp-granian-wsgi": 4}  # fmt: skip
# How each idp server is started: `idp serve --server X`, or granian's WSGI interface.
IDP_SERVERS = {"idp": "granian", "idp-gunicorn": "gunicorn", "idp-granian-wsgi": "granian-wsgi"}
PY_SPY_RATE = 250  # samples per second
SCENARIOS = ("es256", "rs256", "basic", "jwks", "password")
SCENARIO_LABELS = {
    "es256": "private_key_jwt ES256",
    "rs256": "private_key_jwt RS256",
    "basic": "client_secret_basic",
    "jwks": "GET /oidc/jwks",
    "password": "password grant",
}


class BenchError(Exception):
    """Something could not be set up; the message says what and why."""


# -- small helpers -----------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty)"


def run(argv: list[str], what: str, **kwargs: Any) -> str:
    """Run a command to completion; BenchError with its output tail when it fails."""
    kwargs.setdefault("timeout", 300)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{what}: {exc}") from None
    if done.returncode != 0:
        output = "\n".join((done.stderr or done.stdout).strip().splitlines()[-LOG_TAIL:])
        raise BenchError(f"{what} exited {done.returncode}: {shlex.join(argv)}\n{output}")
    return done.stdout


def wait_until(check: Any, timeout: float, what: str, process: subprocess.Popen | None = None,
               log_path: Path | None = None) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BenchError(
                f"{what} exited ({process.returncode}) before it was ready:\n"
                f"{tail(log_path) if log_path else ''}"
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise BenchError(
        f"{what} not ready after {timeout:.0f} s:\n{tail(log_path) if log_path else ''}"
    )


def worker_pids(server: Server) -> list[int]:
    """The worker processes of a pre-forking server (granian, gunicorn), lowest pid first:
    its main process's children, without multiprocessing's resource tracker."""
    if server.process is None:
        return []
    pids = []
    for pid, (ppid, _) in proc_table().items():
        if ppid != server.process.pid:
            continue
        with contextlib.suppress(OSError):
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return sorted(pids)


def stop_group(process: subprocess.Popen | None, grace: float = 15.0) -> None:
    """SIGTERM to a process we started in its own session, then SIGKILL its group."""
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the group we created: stray workers
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, CPU clock ticks) of every process, from /proc.

    The ticks are utime + stime + cutime + cstime: a process's own CPU plus that of its
    children that have exited and been reaped (PostgreSQL backends reaped by the
    postmaster, gunicorn workers by the master), so a tree's sum keeps counting them.
    """
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        table[int(entry.name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return table


def tree_ticks(table: dict[int, tuple[int, int]], roots: list[int]) -> tuple[int, frozenset[int]]:
    """CPU ticks of the roots and all their descendants, and the pids counted."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    stack = [root for root in roots if root in table]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, []))
    return sum(table[pid][1] for pid in seen), frozenset(seen)


def gunicorn_settings() -> str:
    """The worker settings of idp's gunicorn configuration, which the ceiling shares."""
    code = (
        "import json, idp.observability.gunicorn_conf as c; print(json.dumps({k: getattr(c, k, "
        "None) for k in ('worker_class', 'worker_connections', 'threads', 'keepalive', "
        "'preload_app')}))"
    )
    try:
        found = json.loads(run([sys.executable, "-c", code], "gunicorn settings", cwd=REPO))
    except (BenchError, ValueError):
        return "settings unreadable"
    return ", ".join(f"{k}={v}" for k, v in found.items() if v is not None)


def serving() -> Any:
    """``idp.serving.servers`` of this working tree: the command lines `idp serve` runs."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import idp.serving.servers as servers

    if not Path(servers.__file__).resolve().is_relative_to(REPO / "idp"):
        raise BenchError(f"import idp resolved to {servers.__file__}, not to {REPO / 'idp'}")
    return servers


def granian_wsgi_argv(port: int, workers: int, target: str) -> list[str]:
    """idp's granian command line with the WSGI interface instead of its ASGI bridge:
    a blocking thread reads each body and runs the app (4 per worker, as the bridge's)."""
    argv = serving().granian_argv(HOST, port, workers, target)
    at = argv.index("--interface")
    argv[at + 1] = "wsgi"
    argv[-1:-1] = ["--blocking-threads", "4"]
    return argv


def git(*args: str) -> str:
    try:
        return run(["git", "-C", str(REPO), *args], "git", timeout=30).rstrip("\n")
    except BenchError:
        return ""


def fingerprint() -> str:
    """A short hash of the served code: every file under idp/ and pyproject.toml."""
    digest = hashlib.sha256()
    files = [p for p in (REPO / "idp").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in sorted([*files, REPO / "pyproject.toml"]):
        try:
            content = path.read_bytes()
        except OSError:
            content = b"<unreadable>"
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:12]


# -- keys and pre-signed assertions ------------------------------------------------


def generate_keys() -> dict[str, Any]:
    from joserfc.jwk import ECKey, RSAKey

    keys = {}
    for alg, key in (("ES256", ECKey.generate_key("P-256")), ("RS256", RSAKey.generate_key(2048))):
        private = key.as_dict(private=True)
        kid = f"bench-{alg.lower()}-{secrets.token_hex(4)}"
        private.update(kid=kid, alg=alg, use="sig")
        public = key.as_dict(private=False)
        public.update(kid=kid, alg=alg, use="sig")
        keys[alg] = {"private": private, "public": public}
    server_key = ECKey.generate_key("P-256").as_dict(private=True)
    server_key.update(kid=f"bench-server-{secrets.token_hex(4)}", alg="ES256", use="sig")
    keys["server"] = server_key
    return keys


def _sign_chunk(task: tuple[str, dict, str, str, str, int, int, int]) -> list[str]:
    """Form bodies for ``count`` client assertions (run in a worker process)."""
    from joserfc import jwt
    from joserfc.jwk import import_key

    alg, jwk, client_id, audience, prefix, start, count, iat = task
    key = import_key(jwk)
    header = {"alg": alg, "kid": jwk["kid"], "typ": "JWT"}
    head = (
        f"grant_type=client_credentials&scope={quote(SCOPE, safe='')}"
        f"&client_assertion_type={quote(ASSERTION_TYPE, safe='')}&client_assertion="
    )
    bodies = []
    for index in range(start, start + count):
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME - 60,
            "jti": f"{prefix}-{index}",
        }
        bodies.append(head + jwt.encode(header, claims, key, algorithms=[alg]))
    return bodies


class AssertionPool:
    """Pre-signed request bodies of one client, each with its own jti, extended on demand.

    Every server has its own cursor into the pool (its own replay store); a server
    whose store is emptied by a restart starts again at 0.
    """

    def __init__(self, alg: str, jwk: dict, client_id: str, audience: str) -> None:
        self.alg, self.jwk, self.client_id, self.audience = alg, jwk, client_id, audience
        self.prefix = secrets.token_hex(6)
        self.bodies: list[str] = []
        self.signed_at = 0
        self.sign_seconds = 0.0

    def ensure(self, size: int) -> None:
        missing = size - len(self.bodies)
        if missing <= 0:
            return
        began = time.perf_counter()
        if not self.signed_at:
            self.signed_at = int(time.time())
        workers = max(1, min(os.cpu_count() or 1, 4))
        chunk = math.ceil(missing / workers)
        tasks = [
            (self.alg, self.jwk["private"], self.client_id, self.audience, self.prefix,
             len(self.bodies) + i * chunk, min(chunk, missing - i * chunk), self.signed_at)
            for i in range(workers) if missing - i * chunk > 0
        ]  # fmt: skip
        with ProcessPoolExecutor(max_workers=len(tasks)) as pool:
            for part in pool.map(_sign_chunk, tasks):
                self.bodies.extend(part)
        took = time.perf_counter() - began
        self.sign_seconds += took
        log(f"signed {missing} {self.alg} assertions in {took:.1f} s (pool {len(self.bodies)})")

    def fresh(self) -> bool:
        """False once the oldest assertions come near their expiry."""
        return not self.signed_at or time.time() < self.signed_at + ASSERTION_LIFETIME - 300


# -- the storage servers of idp's production profile --------------------------------


class Postgres:
    """A private PostgreSQL cluster: initdb into the temp dir, start on a free port."""

    def __init__(self, tmp: Path, options: str) -> None:
        self.dir = tmp / "postgres"
        self.data = self.dir / "data"
        self.sockets = self.dir / "sockets"
        self.logfile = self.dir / "postgres.log"
        self.port = free_port()
        self.options = options
        self.started = False
        self.version = ""

    def start(self) -> None:
        if not os.access(PG_CTL, os.X_OK):
            raise BenchError(f"{PG_CTL} is not executable")
        self.dir.mkdir()
        self.sockets.mkdir()
        self.version = run([str(PG_CTL), "--version"], "pg_ctl --version").strip()
        log(f"postgres: initdb into {self.data} ({self.version})")
        initdb = "--auth=trust --username=postgres --encoding=UTF8 --locale=C.UTF-8"
        run([str(PG_CTL), "initdb", "-s", "-D", str(self.data), "-o", initdb], "initdb")
        server_options = (
            f"-p {self.port} -c listen_addresses={HOST} -k {self.sockets} {self.options}"
        ).strip()
        self.started = True  # from here on, stop() must run
        run(
            [str(PG_CTL), "start", "-w", "-t", "60", "-D", str(self.data),
             "-l", str(self.logfile), "-o", server_options],
            "pg_ctl start",
        )  # fmt: skip
        import psycopg

        with psycopg.connect(
            host=HOST, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute("CREATE DATABASE idp")
        log(f"postgres: listening on {HOST}:{self.port}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/idp"

    def pids(self) -> list[int]:
        try:
            return [int((self.data / "postmaster.pid").read_text().split()[0])]
        except (OSError, ValueError, IndexError):
            return []

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        try:
            run([str(PG_CTL), "stop", "-w", "-m", "fast", "-D", str(self.data)], "pg_ctl stop",
                timeout=60)  # fmt: skip
        except BenchError as exc:
            log(f"postgres: {exc}; killing the postmaster")
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)


class Redis:
    """A private redis-server without persistence on a free loopback port."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "redis"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.logfile = self.dir / "redis.log"
        self.version = ""

    def start(self) -> None:
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.access(executable, os.X_OK):
            raise BenchError("redis-server not found; run tests/support/ensure-servers")
        self.version = run([executable, "--version"], "redis-server --version").strip()
        self.dir.mkdir()
        with self.logfile.open("wb") as out:
            self.process = subprocess.Popen(
                [executable, "--port", str(self.port), "--bind", HOST, "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "yes"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        client = self.client()
        wait_until(client.ping, 20, "redis-server", self.process, self.logfile)
        log(f"redis: listening on {HOST}:{self.port}")

    def client(self) -> Any:
        import redis

        return redis.Redis(host=HOST, port=self.port, socket_timeout=5)

    def url(self, db: int) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process and self.process.poll() is None else []

    def stop(self) -> None:
        stop_group(self.process)
        self.process = None


# -- the servers under test --------------------------------------------------------


@dataclass
class Clients:
    """The clients every server knows, under the same ids (made by idp's CLI)."""

    es256: str = ""
    rs256: str = ""
    basic: str = ""
    basic_secret: str = ""
    password: str = ""
    password_secret: str = ""

    def basic_header(self, password_client: bool = False) -> str:
        cid, secret = (
            (self.password, self.password_secret)
            if password_client
            else (self.basic, self.basic_secret)
        )
        raw = f"{quote(cid, safe='')}:{quote(secret, safe='')}".encode()
        return "Basic " + base64.b64encode(raw).decode()


class Server:
    """A server under test, started in its own session on a free loopback port."""

    name = ""
    health_path = "/healthz"
    restart_each_run = False  # a fresh process (and replay store) for every measured run
    replay_store = True

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp / self.name
        self.tmp.mkdir()
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.logfile = self.tmp / "server.log"
        self.process: subprocess.Popen | None = None
        self.cursors: dict[str, int] = {}  # assertion pool alg -> next unused index
        self.starts = 0
        self.extra_pids: list[int] = []  # storage servers counted in its CPU

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> None:
        self.before_start()
        argv = self.command()
        with self.logfile.open("ab") as out:
            self.process = subprocess.Popen(
                argv, env=self.environment(), cwd=self.tmp, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        if self.restart_each_run:
            self.cursors.clear()  # a fresh process has an empty replay store
        url = self.base + self.health_path
        wait_until(
            lambda: requests.get(url, timeout=2).status_code == 200,
            60, f"{self.name} ({shlex.join(argv)})", self.process, self.logfile,
        )  # fmt: skip

    def before_start(self) -> None:
        pass

    def stop(self) -> None:
        stop_group(self.process)
        self.process = None

    def cpu(self) -> tuple[float, float, frozenset[int]]:
        """CPU seconds of (the server's process tree, its storage servers), and the roots
        of those trees that were alive (a root that exits takes its CPU with it)."""
        table = proc_table()
        main = [self.process.pid] if self.process else []
        own, _ = tree_ticks(table, main)
        extra, _ = tree_ticks(table, self.extra_pids)
        alive = frozenset(p for p in main + self.extra_pids if p in table)
        return own / CLOCK_TICKS, extra / CLOCK_TICKS, alive

    def describe(self) -> str:
        return ""


class IdpServer(Server):
    """idp of this working tree; ``name`` picks the HTTP server (IDP_SERVERS).

    Every idp server shares the one PostgreSQL database (clients, keys) that the first,
    "idp", provisions, and the issuer (its URL), so the same assertions work on each;
    each has its own Redis database, hence its own replay store.
    """

    def __init__(
        self, tmp: Path, args: argparse.Namespace, pg: Postgres, redis: Redis,
        name: str = "idp", issuer: str = "",
    ) -> None:  # fmt: skip
        self.name = name
        super().__init__(tmp)
        self.server = IDP_SERVERS[name]
        self.workers = args.workers
        self.serve_args = shlex.split(args.idp_args)
        self.pg, self.redis = pg, redis
        self.issuer = issuer or self.base
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("IDP_") and k != "PYTHONPATH"
        }
        metrics = self.tmp / "metrics"
        metrics.mkdir()
        self.env.update(
            PYTHONPATH=str(REPO),  # this working tree, as the tests serve it
            PYTHONUNBUFFERED="1",
            IDP_ISSUER=self.issuer,
            IDP_DATABASE_URL=pg.url,
            IDP_REDIS_URL=redis.url(REDIS_DB[name]),
            IDP_KEYS_DIR=str(tmp / "idp" / "keys"),  # the signing keys "idp" made
            IDP_ASSERTION_MAX_LIFETIME=str(ASSERTION_LIFETIME),
            IDP_CLOCK_SKEW=str(CLOCK_SKEW),
            IDP_ACCESS_TOKEN_TTL=str(ACCESS_TOKEN_TTL),
            PROMETHEUS_MULTIPROC_DIR=str(metrics),
        )
        self.extra_pids = []
        self.fingerprints: list[str] = []
        self.settings = ""  # idp's gunicorn worker settings when it started (gunicorn only)

    def environment(self) -> dict[str, str]:
        return self.env

    def cli(self, *args: str, stdin: str | None = None) -> str:
        return run(
            [sys.executable, "-m", "idp", *args], f"idp {' '.join(args[:2])}",
            env=self.env, cwd=self.tmp, input=stdin, timeout=120,
        )  # fmt: skip

    def provision(self, keys: dict[str, Any]) -> Clients:
        found = self.cli_python("import idp; print(idp.__file__)").strip()
        if Path(found).resolve().parent != (REPO / "idp").resolve():
            raise BenchError(f"import idp resolved to {found}, not to {REPO / 'idp'}")
        self.cli("init")
        clients = Clients()
        for alg in ("ES256", "RS256"):
            jwks_file = self.tmp / f"client-{alg.lower()}.jwks.json"
            jwks_file.write_text(json.dumps({"keys": [keys[alg]["public"]]}))
            record = self.create_client(
                f"bench-{alg.lower()}", "private_key_jwt", "client_credentials", SCOPE,
                "--jwks-file", str(jwks_file),
            )  # fmt: skip
            setattr(clients, alg.lower(), record["client_id"])
        record = self.create_client(
            "bench-basic", "client_secret_basic", "client_credentials", SCOPE
        )
        clients.basic, clients.basic_secret = record["client_id"], record["client_secret"]
        record = self.create_client(
            "bench-password", "client_secret_basic", "password", PASSWORD_SCOPE
        )
        clients.password, clients.password_secret = record["client_id"], record["client_secret"]
        self.cli(
            "users", "create", "--username", USERNAME, "--scope", PASSWORD_SCOPE,
            "--password-stdin", stdin=PASSWORD,
        )  # fmt: skip
        return clients

    def cli_python(self, code: str) -> str:
        return run([sys.executable, "-c", code], "python", env=self.env, cwd=self.tmp)

    def create_client(self, name: str, method: str, grants: str, scope: str, *extra: str) -> dict:
        output = self.cli(
            "clients", "create", "--name", name, "--auth-method", method,
            "--grant-types", grants, "--scope", scope, *extra, "--json",
        )  # fmt: skip
        try:
            return json.loads(output)
        except ValueError:
            raise BenchError(f"idp clients create --json printed no JSON:\n{output}") from None

    def before_start(self) -> None:
        self.fingerprints.append(fingerprint())
        if self.server == "gunicorn":
            self.settings = self.settings or gunicorn_settings()

    def command(self) -> list[str]:
        if self.server == "granian-wsgi":
            return granian_wsgi_argv(self.port, self.workers, "idp.wsgi:app")
        return [
            sys.executable, "-m", "idp", "serve", "--server", self.server, "--host", HOST,
            "--port", str(self.port), "--workers", str(self.workers), *self.serve_args,
        ]  # fmt: skip

    def start(self) -> None:
        super().start()
        self.extra_pids = self.pg.pids() + self.redis.pids()

    def describe(self) -> str:
        storage = f"PostgreSQL + Redis database {REDIS_DB[self.name]} (replay store)"
        if self.server == "granian-wsgi":
            argv = ["python", *self.command()[1:]]
            return f"`{shlex.join(argv)}` (granian's WSGI interface), {storage}"
        extra = " " + shlex.join(self.serve_args) if self.serve_args else ""
        settings = (
            f"idp/observability/gunicorn_conf.py: {self.settings}"
            if self.server == "gunicorn"
            else "idp.serving.servers.granian_argv: ASGI, idp.serving.asgi.WsgiBridge"
        )
        return (
            f"`python -m idp serve --server {self.server} --workers {self.workers}{extra}` "
            f"({settings}), {storage}"
        )


class NodeServer(Server):
    health_path = "/oidc/jwks"
    restart_each_run = True

    def __init__(self, tmp: Path, workers: int, config: dict, redis: Redis | None) -> None:
        self.name = "node-cluster" if workers else "node"
        super().__init__(tmp)
        self.workers = workers
        self.redis = redis
        self.config = dict(config, host=HOST, port=self.port, workers=workers)
        self.config_path = self.tmp / "config.json"

    def before_start(self) -> None:
        if self.redis is not None:
            # A fresh key prefix per start: an empty replay store, like a fresh process.
            self.config.update(
                redis_url=self.redis.url(1), redis_prefix=f"node-cluster:{self.starts}:"
            )
        self.config_path.write_text(json.dumps(self.config))

    def command(self) -> list[str]:
        return ["node", str(NODE_DIR / "server.js"), str(self.config_path)]

    def environment(self) -> dict[str, str]:
        return dict(os.environ, NODE_ENV="production")

    def start(self) -> None:
        super().start()
        self.extra_pids = self.redis.pids() if self.redis is not None else []

    def describe(self) -> str:
        if self.workers:
            return (
                f"`node bench/node/server.js`, cluster of {self.workers} worker processes, "
                "replay detection in Redis"
            )
        return "`node bench/node/server.js`, one process, replay detection in memory"


class CeilingServer(Server):
    """The ceiling app; with ``redis``, the ceiling-replay server (idp's replay check).

    Served like idp's default (``--ceiling-server granian``): granian with the flags of
    ``idp.serving.servers.granian_argv`` on bench/ceiling_asgi.py (the app behind idp's
    WsgiBridge); or like idp-gunicorn, with idp's gunicorn settings.
    """

    def __init__(
        self, tmp: Path, args: argparse.Namespace, config: dict, redis: Redis | None = None
    ) -> None:
        self.name = "ceiling-replay" if redis is not None else "ceiling"
        super().__init__(tmp)
        self.redis = redis
        self.replay_store = redis is not None
        if redis is not None:
            # Its own database: the ceiling's jti keys never meet idp's or node's.
            config = dict(config, replay_redis_url=redis.url(REDIS_DB[self.name]))
        self.workers = args.workers
        self.server = args.ceiling_server
        self.server_args = shlex.split(args.ceiling_args)
        self.config_path = self.tmp / "config.json"
        self.config_path.write_text(json.dumps(config))
        self.settings = ""

    def before_start(self) -> None:
        if self.server == "gunicorn":
            self.settings = self.settings or gunicorn_settings()

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return dict(
            env,
            PYTHONPATH=os.pathsep.join([str(BENCH), str(REPO)]),
            BENCH_CEILING_CONFIG=str(self.config_path),
        )

    def start(self) -> None:
        super().start()
        self.extra_pids = self.redis.pids() if self.redis is not None else []

    def command(self) -> list[str]:
        if self.server == "granian":
            argv = serving().granian_argv(HOST, self.port, self.workers, "ceiling_asgi:app")
            argv[-1:-1] = self.server_args
            return argv
        return [
            sys.executable, "-m", "gunicorn", "--config", "python:idp.observability.gunicorn_conf",
            "--bind", f"{HOST}:{self.port}", "--workers", str(self.workers),
            *self.server_args, "ceiling_app:app",
        ]  # fmt: skip

    def describe(self) -> str:
        replay = "replay check in Redis with idp's RedisReplayStore" if self.redis else (
            "no replay store"
        )  # fmt: skip
        if self.server == "granian":
            served = (
                "bench/ceiling_app.py behind idp.serving.asgi.WsgiBridge (bench/ceiling_asgi.py), "
                "granian with idp.serving.servers.granian_argv's flags"
            )
        else:
            served = f"bench/ceiling_app.py on gunicorn ({self.settings})"
        extra = " " + shlex.join(self.server_args) if self.server_args else ""
        return f"{served}, --workers {self.workers}{extra}, no storage, {replay}"


# -- one measured run --------------------------------------------------------------


@dataclass
class WrkResult:
    duration: float = 0.0
    ok: int = 0
    responses: int = 0
    unexpected: int = 0
    socket_errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    p50: float = math.nan  # ms
    p90: float = math.nan
    p99: float = math.nan
    exhausted: bool = False
    used: list[int] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.unexpected + self.socket_errors

    @property
    def rate(self) -> float:
        return self.ok / self.duration if self.duration else 0.0


@dataclass
class Replay:
    server: str
    scenario: str
    connections: int
    early: str = "not run"
    late: str = "not run"
    round: int = 1

    @property
    def passed(self) -> bool:
        return self.early.startswith("PASS") and self.late.startswith("PASS")


@dataclass
class Row:
    server: str
    scenario: str
    connections: int
    result: WrkResult
    server_cpu: float  # seconds: the server's own processes
    storage_cpu: float  # seconds: PostgreSQL + Redis (idp) or Redis (node-cluster)
    wrk_cpu: float  # seconds
    cpu_valid: bool
    others_cpu: float = math.nan  # seconds: every other process on the machine (noise)
    round: int = 1

    def cpu_ms(self, which: str = "all") -> float:
        if not self.cpu_valid or not self.result.ok:
            return math.nan
        seconds = {
            "all": self.server_cpu + self.storage_cpu,
            "server": self.server_cpu,
            "storage": self.storage_cpu,
            "wrk": self.wrk_cpu,
        }[which]
        return seconds * 1000 / self.result.ok


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.runs = 0
        self.pools: dict[str, AssertionPool] = {}
        self.rates: dict[tuple[str, str], float] = {}  # (server, scenario) -> highest rate
        self.rows: list[Row] = []
        self.replays: list[Replay] = []
        self.clients = Clients()
        self.wrk_procs: list[subprocess.Popen] = []

    # -- the request of each scenario --

    def scenario_request(self, server: Server, scenario: str) -> tuple[str, str, str, str, int]:
        """(method, path, body source, Authorization, expected status) for wrk."""
        if scenario == "jwks":
            return "GET", "/oidc/jwks", "-", "-", 200
        if scenario == "basic":
            body = f"=grant_type=client_credentials&scope={quote(SCOPE, safe='')}"
            return "POST", "/oidc/token", body, self.clients.basic_header(), 200
        if scenario == "password":
            body = (
                f"=grant_type=password&username={quote(USERNAME)}&password={quote(PASSWORD)}"
                f"&scope={quote(PASSWORD_SCOPE, safe='')}"
            )
            return "POST", "/oidc/token", body, self.clients.basic_header(True), 200
        return "POST", "/oidc/token", "@", "-", 200

    def bodies_file(self, server: Server, scenario: str, seconds: float) -> tuple[Path, int]:
        """A file of never-used assertion bodies for this server; returns it and its start."""
        alg = scenario.upper()
        pool = self.pools[alg]
        rate = self.rates.get((server.name, scenario), self.args.rate_guess)
        need = int(rate * seconds * 2) + 200 * self.args.threads + 500
        start = server.cursors.get(alg, 0)
        pool.ensure(start + need)
        self.runs += 1
        path = self.tmp / f"bodies-{self.runs}.txt"
        path.write_text("\n".join(pool.bodies[start : start + need]) + "\n")
        return path, start

    def advance(self, server: Server, scenario: str, result: WrkResult, threads: int) -> None:
        if scenario in ("es256", "rs256"):
            alg = scenario.upper()
            used = max(result.used, default=0)
            server.cursors[alg] = server.cursors.get(alg, 0) + used * threads

    # -- wrk --

    def wrk(self, server: Server, scenario: str, connections: int, seconds: float,
            source: str, progress: str = "-") -> WrkResult:  # fmt: skip
        method, path, _, auth, expect = self.scenario_request(server, scenario)
        threads = min(self.args.threads, connections)
        whole_seconds = max(1, math.ceil(seconds))  # wrk takes whole seconds
        argv = [
            "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{whole_seconds}s",
            "--timeout", f"{self.args.timeout:g}s", "-s", str(LUA_SCRIPT), server.base + path,
            "--", method, path, source, auth, progress, str(threads), str(expect),
        ]  # fmt: skip
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.tmp
        )
        self.wrk_procs.append(process)
        try:
            stdout, stderr = process.communicate(timeout=seconds + self.args.timeout + 60)
        finally:
            self.wrk_procs.remove(process)
            if process.poll() is None:
                process.kill()
                process.wait()
        line = next((x for x in stdout.splitlines() if x.startswith("TOKEN_BENCH_RESULT ")), "")
        if process.returncode != 0 or not line:
            raise BenchError(f"wrk exited {process.returncode}: {shlex.join(argv)}\n"
                             f"{stdout[-2000:]}\n{stderr[-2000:]}")  # fmt: skip
        data = json.loads(line.split(" ", 1)[1])
        statuses: dict[str, int] = {}
        for thread in data["threads"]:
            for status, count in thread["statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
        socket_errors = sum(v for k, v in data["errors"].items() if k != "status")
        lat = data["latency_us"]
        return WrkResult(
            duration=data["duration_us"] / 1e6,
            ok=statuses.get(str(expect), 0),
            responses=sum(t["responses"] for t in data["threads"]),
            unexpected=sum(t["unexpected"] for t in data["threads"]),
            socket_errors=socket_errors,
            statuses=statuses,
            p50=lat["p50"] / 1000,
            p90=lat["p90"] / 1000,
            p99=lat["p99"] / 1000,
            exhausted=any(t["exhausted"] for t in data["threads"]),
            used=[t["used"] for t in data["threads"]],
        )

    # -- the replay check --

    @staticmethod
    def sent_lines(threads: int) -> tuple[int, int]:
        """Two lines of a bodies file that wrk surely sends first.

        Thread i of T sends lines i-1, i-1+T, ...; but wrk calls request() once in the
        first thread to check the script, so line 0 is consumed without being sent.
        Returns (the first thread's second line, the second thread's first line or, with
        one thread, its third).
        """
        return threads, (1 if threads > 1 else 2)

    @staticmethod
    def resend(server: Server, body: str) -> str:
        try:
            response = requests.post(
                server.base + "/oidc/token", data=body, timeout=30,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
        except requests.RequestException as exc:
            return f"FAIL ({type(exc).__name__})"
        try:
            error = response.json().get("error", "")
        except ValueError:
            error = ""
        refused = response.status_code == 401 and error == "invalid_client"
        return f"{'PASS' if refused else 'FAIL'} (HTTP {response.status_code} {error})".rstrip()

    def replay_checker(
        self, server: Server, replay: Replay, early: str, late: str, before: int,
        progress: Path, threads: int, finished: threading.Event,
    ) -> threading.Thread:  # fmt: skip
        """During the run, re-send two used assertions: one early, one after ≥2,500 others.

        ``late`` was among the first requests of the warm-up (or of this run), ``before``
        is the number of responses between it and this run (the warm-up's).
        """

        def counts() -> list[int]:
            values = []
            for index in range(1, threads + 1):
                try:
                    values.append(int((progress.parent / f"{progress.name}{index}").read_text()))
                except (OSError, ValueError):
                    values.append(0)
            return values

        def check() -> None:
            # Early: once every thread has 200 responses, its first bodies were used.
            while not finished.is_set() and min(counts()) < 200:
                time.sleep(0.05)
            if min(counts()) < 200:
                replay.early = "not reached (the run ended first)"
                return
            replay.early = f"{self.resend(server, early)} after ~{sum(counts())} requests"
            # Late: when ≥2,500 responses have come since the late assertion was sent
            # (those still in flight with it on the other connections not counted).
            target = REPLAY_DISTANCE + replay.connections
            while not finished.is_set() and before + sum(counts()) < target:
                time.sleep(0.05)
            others = before + sum(counts()) - replay.connections
            if others >= REPLAY_DISTANCE:
                replay.late = f"{self.resend(server, late)} after ≥{others} others (during the run)"

        return threading.Thread(target=check, daemon=True)

    def late_replay_after_run(
        self, server: Server, scenario: str, replay: Replay, late: str, seen: int
    ) -> None:
        """The run was too short for the late check: send more (unmeasured) fresh
        assertions until ≥2,500 others have passed, then re-send the late one."""
        threads = min(self.args.threads, replay.connections)
        filler = 0
        for _ in range(5):
            others = seen + filler - replay.connections
            if others >= REPLAY_DISTANCE:
                break
            rate = max(self.rates.get((server.name, scenario), 50.0), 50.0)
            seconds = min(30.0, (REPLAY_DISTANCE - others) / rate)
            path, _ = self.bodies_file(server, scenario, seconds)
            extra = self.wrk(server, scenario, replay.connections, seconds, f"@{path}")
            self.advance(server, scenario, extra, threads)
            filler += extra.responses
        others = seen + filler - replay.connections
        if others < REPLAY_DISTANCE:
            replay.late = f"not reached (only {others} other requests)"
            return
        verdict = self.resend(server, late)
        replay.late = f"{verdict} after ≥{others} others (after the run, {filler} unmeasured)"

    # -- the measurement --

    def measure(
        self, server: Server, scenario: str, connections: int, round_no: int, retry: bool = False
    ) -> Row:
        args = self.args
        if server.restart_each_run or server.process is None:
            server.stop()
            server.start()
        threads = min(args.threads, connections)
        pkjwt = scenario in ("es256", "rs256")
        check_replay = pkjwt and server.replay_store
        early_line, late_line = self.sent_lines(threads)
        late_body, before = "", 0
        if args.warmup:
            if pkjwt:
                path, _ = self.bodies_file(server, scenario, args.warmup)
                source = f"@{path}"
                late_body = path.read_text().splitlines()[late_line]
            else:
                source = self.scenario_request(server, scenario)[2]
            warm = self.wrk(server, scenario, connections, args.warmup, source)
            self.advance(server, scenario, warm, threads)
            # A server's first measured run is sized from its warm-up (which includes
            # its start, so doubled) or the best rate any server reached in the scenario.
            best = max((r for (_, sc), r in self.rates.items() if sc == scenario), default=0)
            self.rates.setdefault((server.name, scenario), max(2 * warm.rate, best))
            before = warm.responses
        replay = (
            Replay(server.name, scenario, connections, round=round_no) if check_replay else None
        )
        checker = None
        finished = threading.Event()
        progress_arg = "-"
        if pkjwt:
            path, _ = self.bodies_file(server, scenario, args.duration)
            source = f"@{path}"
            lines = path.read_text().splitlines()
            if not late_body:
                late_body = lines[late_line]
            if replay is not None:
                progress = self.tmp / f"progress-{self.runs}-"
                progress_arg = str(progress)
                checker = self.replay_checker(
                    server, replay, lines[early_line], late_body, before, progress, threads,
                    finished,
                )  # fmt: skip
        else:
            source = self.scenario_request(server, scenario)[2]
        server_before, storage_before, pids_before = server.cpu()
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        busy_before = machine_busy()
        if checker:
            checker.start()
        try:
            result = self.wrk(server, scenario, connections, args.duration, source, progress_arg)
        finally:
            finished.set()
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        busy_after = machine_busy()
        server_after, storage_after, pids_after = server.cpu()
        self.advance(server, scenario, result, threads)
        if scenario not in ("jwks", "password"):
            key = (server.name, scenario)
            self.rates[key] = max(self.rates.get(key, 0.0), result.rate)
        if checker is not None and replay is not None:
            checker.join(timeout=60)
            if replay.late == "not run":
                self.late_replay_after_run(
                    server, scenario, replay, late_body, before + result.responses
                )
        wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (
            wrk_before.ru_utime + wrk_before.ru_stime
        )
        own_cpu = (self_after.ru_utime + self_after.ru_stime) - (
            self_before.ru_utime + self_before.ru_stime
        )
        row = Row(
            server.name, scenario, connections, result,
            server_after - server_before, storage_after - storage_before, wrk_cpu,
            cpu_valid=pids_before == pids_after, round=round_no,
        )  # fmt: skip
        # Whatever else ran on the machine meanwhile (other people's work: noise).
        row.others_cpu = max(
            0.0, busy_after - busy_before - row.server_cpu - row.storage_cpu - wrk_cpu - own_cpu
        )
        note = " POOL EXHAUSTED" if result.exhausted else ""
        log(
            f"{server.name:12} {SCENARIO_LABELS[scenario]:22} c={connections:<3} "
            f"{result.rate:8.1f}/s p50 {result.p50:7.1f} ms p99 {result.p99:7.1f} ms "
            f"errors {result.errors} cpu {row.cpu_ms():.2f} ms/token{note}"
            + (f"\n    replay: early {replay.early}; late {replay.late}" if replay else "")
        )
        if result.exhausted and not retry:
            # A wrk thread ran out of assertions and stopped: the rate is too low. Do
            # the run again with files sized for three times that rate.
            log("  ... ran out of pre-signed assertions: measuring again with more")
            key = (server.name, scenario)
            self.rates[key] = 3 * max(self.rates.get(key, 0.0), result.rate)
            return self.measure(server, scenario, connections, round_no, retry=True)
        self.rows.append(row)
        if replay is not None:
            self.replays.append(replay)
        return row

    # -- an optional profile of idp (not measured) --

    def profile_idp(self, server: IdpServer, scenario: str, out: Path) -> list[str]:
        """py-spy samples of one idp worker under load (an extra, unmeasured run).

        Writes the folded stacks to ``out`` and returns the top functions by inclusive
        share of the samples, then the five largest costs in ms per token.
        """
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not os.access(spy, os.X_OK):
            raise BenchError("py-spy not found: .venv/bin/pip install py-spy")
        workers = worker_pids(server)
        if not workers:
            raise BenchError("no idp worker process found to profile")
        seconds = self.args.py_spy
        connections = max(self.args.connection_list)
        source = self.scenario_request(server, scenario)[2]
        if scenario in ("es256", "rs256"):
            path, _ = self.bodies_file(server, scenario, seconds + 2)
            source = f"@{path}"
        # Every thread of the worker is looked at (the app runs on the bridge's threads,
        # the event loop on the main one), and the one holding the GIL is sampled: a thread
        # waiting on a socket, a queue or a lock does not count, which py-spy's idle
        # detection alone misses for queue and lock waits.
        spy_argv = [
            spy, "record", "--nonblocking", "--gil", "-r", str(PY_SPY_RATE), "-d", str(seconds),
            "-f", "raw", "-o", str(out), "-p", str(workers[0]),
        ]  # fmt: skip
        result: list[WrkResult] = []
        load = threading.Thread(
            target=lambda: result.append(
                self.wrk(server, scenario, connections, seconds + 2, source)
            ),
            daemon=True,
        )
        load.start()
        time.sleep(1)
        run(spy_argv, "py-spy record", timeout=seconds + 60)
        load.join(timeout=seconds + self.args.timeout + 60)
        if not result:
            return top_functions(out)
        self.advance(server, scenario, result[0], min(self.args.threads, connections))
        # Tokens the sampled worker answered while sampled, if the workers share evenly.
        tokens = result[0].rate * seconds / len(workers)
        costs = largest_costs(out, 1000 / PY_SPY_RATE, tokens)
        load_line = (
            f"load while sampled: {result[0].rate:.0f} tokens/s, {result[0].errors} errors"
            + (", pool exhausted" if result[0].exhausted else "")
        )
        return [*top_functions(out), load_line, "five largest costs per token:", *costs]

    def kill_wrk(self) -> None:
        for process in list(self.wrk_procs):
            with contextlib.suppress(ProcessLookupError):
                process.kill()


# -- the report --------------------------------------------------------------------


def _fmt(value: float, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def render_memory(memory: dict[str, TreeMemory]) -> list[str]:
    if not memory:
        return []
    lines = [
        "### Memory after the last round",
        "",
        "| server | processes | RSS MiB (sum of VmRSS) | PSS MiB (sum of Pss) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {tree.describe()} |" for name, tree in memory.items()]
    return [
        *lines,
        "",
        "(each server's process tree: main process and workers, without PostgreSQL and "
        "Redis; from /proc/<pid>/status and /proc/<pid>/smaps_rollup. RSS counts pages "
        "the workers share with their parent once per process, PSS splits them; node is "
        "restarted before each run, so its figure is after one run)",
        "",
    ]


def render(args: argparse.Namespace, info: dict[str, Any], bench: Bench,
           servers: dict[str, Server], memory: dict[str, TreeMemory]) -> str:  # fmt: skip
    lines = [
        f"## Token endpoint: idp vs node-oidc-provider vs ceiling — run of {info['date']}",
        "",
        f"- command: `{info['command']}`",
        f"- machine: {info['machine']}",
        f"- load average (1/5/15 min) before / after: {info['load']}",
        f"- code: {info['code']}",
        f"- software: {info['software']}",
        f"- load generator: wrk, {args.threads} threads, `--timeout {args.timeout:g}s`, "
        f"{args.warmup:g} s discarded warm-up + {args.duration:g} s measured per run; "
        "bench/token_bench.lua checks every status; private_key_jwt bodies pre-signed "
        "(unique jti, never sent twice to one replay store)",
        f"- elapsed: {info['elapsed']}",
    ]
    for name, server in servers.items():
        lines.append(f"- {name}: {server.describe()}")
    lines += ["", *summary(bench.rows, bench.replays, list(SERVERS), SCENARIO_LABELS)]
    lines += render_memory(memory)
    lines += [
        "### Every server and scenario",
        "",
        "| server | scenario | connections | tokens/s | p50 ms | p90 ms | p99 ms | errors "
        "| CPU ms/token |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str, int], list[Row]] = {}
    for row in bench.rows:
        groups.setdefault((row.server, row.scenario, row.connections), []).append(row)
    keys = sorted(groups, key=lambda k: (SCENARIOS.index(k[1]), k[2], SERVERS.index(k[0])))

    def med(rows: list[Row], value: Any) -> float:
        values = [v for r in rows if not math.isnan(v := value(r))]
        return statistics.median(values) if values else math.nan

    for key in keys:
        rows = groups[key]
        name = key[0]
        flag = " (pool exhausted)" if any(r.result.exhausted for r in rows) else ""
        lines.append(
            f"| {name} | {SCENARIO_LABELS[key[1]]} | {key[2]} "
            f"| {med(rows, lambda r: r.result.rate):.0f}{flag} "
            f"| {_fmt(med(rows, lambda r: r.result.p50))} "
            f"| {_fmt(med(rows, lambda r: r.result.p90))} "
            f"| {_fmt(med(rows, lambda r: r.result.p99))} "
            f"| {sum(r.result.errors for r in rows)} | {_fmt(med(rows, Row.cpu_ms), 2)} |"
        )
    rounds = f"medians over {args.rounds} rounds; " if args.rounds > 1 else ""
    lines += [
        "",
        f"({rounds}tokens/s: 200 responses per second, for GET /oidc/jwks JWKS responses per "
        "second; latency from wrk, all responses; errors: non-200 responses plus socket "
        "errors and timeouts; CPU ms/token: user+system CPU of the server's processes and, for "
        "idp, its PostgreSQL and Redis, for node-cluster and ceiling-replay their Redis, per "
        "200 response, from /proc)",
        "",
        "| server | scenario | connections | server CPU ms | storage CPU ms | wrk CPU ms "
        "| other processes (cores) | statuses |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for key in keys:
        rows = groups[key]
        statuses: dict[str, int] = {}
        socket_errors = 0
        for r in rows:
            socket_errors += r.result.socket_errors
            for status, count in r.result.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        text = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        text += f", socket errors: {socket_errors}" if socket_errors else ""
        others = med(rows, lambda r: r.others_cpu / r.result.duration if r.result.duration else 0)
        lines.append(
            f"| {key[0]} | {SCENARIO_LABELS[key[1]]} | {key[2]} "
            f"| {_fmt(med(rows, lambda r: r.cpu_ms('server')), 2)} "
            f"| {_fmt(med(rows, lambda r: r.cpu_ms('storage')), 2)} "
            f"| {_fmt(med(rows, lambda r: r.cpu_ms('wrk')), 2)} | {_fmt(others, 2)} | {text} |"
        )
    lines += [
        "",
        "(CPU per 200 response, `-` where a server's main process changed during the run; other "
        "processes: the CPU that everything else on the machine used meanwhile, in cores, "
        f"out of {os.cpu_count()}: other people's work, the noise in these figures)",
        "",
    ]
    lines.append("Replay checks (a used assertion sent again must get 401 invalid_client):")
    lines.append("")
    for replay in bench.replays:
        lines.append(
            f"- {'PASS' if replay.passed else 'FAIL'} {replay.server} "
            f"{SCENARIO_LABELS[replay.scenario]} c={replay.connections} round {replay.round}: "
            f"early {replay.early}; late {replay.late}"
        )
    if "ceiling" in servers:
        lines.append("- ceiling: not checked (no replay store, by design)")
    for note in info["notes"]:
        lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"nproc={os.cpu_count()}, {model}, {platform.system()} {platform.release()} "
        f"{platform.machine()}, Python {platform.python_version()}"
    )


def command_line() -> str:
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(Path.cwd()))
    except ValueError:
        shown = str(python)
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    return shlex.join([shown, script, *sys.argv[1:]])


def describe_code(start_fp: str, end_fp: str) -> str:
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    status = git("status", "--porcelain", "--", "idp", "pyproject.toml", "bench")
    changed = ", ".join(line[3:] for line in status.splitlines()) if status else ""
    text = f"commit {commit}" + (
        f" plus uncommitted changes to: {changed}" if changed else ", clean"
    )
    text += f"; idp code fingerprint {start_fp}"
    if end_fp != start_fp:
        text += f", CHANGED DURING THE RUN (now {end_fp}; the idp server kept the code it loaded)"
    return text


def software(pg: Postgres, redis: Redis) -> str:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "?"

    node = run(["node", "--version"], "node --version").strip()
    wrk = "wrk"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        wrk = (
            subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
            .stdout.split("[")[0]
            .strip()
        )
    try:
        package = json.loads((NODE_DIR / "node_modules/oidc-provider/package.json").read_text())
        provider = package["version"]
    except (OSError, ValueError, KeyError):
        provider = "?"
    redis_version = re.search(r"v=(\S+)", redis.version)
    return (
        f"{wrk}; node {node}, oidc-provider {provider}; Flask {version('flask')}, "
        f"Authlib {version('authlib')}, joserfc {version('joserfc')}, "
        f"granian {version('granian')}, gunicorn {version('gunicorn')}, "
        f"gevent {version('gevent')}; {pg.version}; "
        f"Redis {redis_version.group(1) if redis_version else '?'}"
    )


def record(report: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    RESULTS.write_text(text.rstrip("\n") + "\n\n" + report)


# -- main --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the default scenarios in one round instead of "
        f"{DEFAULT_ROUNDS} (explicit options win)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"connections {FULL_CONNECTIONS} and every scenario (explicit options win)",
    )
    parser.add_argument(
        "--connections",
        default=None,
        help=f"comma-separated wrk connection counts (default {DEFAULT_CONNECTIONS})",
    )
    parser.add_argument(
        "--duration", type=int, default=None, help="measured seconds per run (default 10)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="discarded seconds before each run (default 2)"
    )
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated subset of {','.join(SERVERS)} (default all but idp-granian-wsgi)",
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default {DEFAULT_SCENARIOS})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of every idp server and the ceiling (default 2)",
    )
    parser.add_argument(
        "--ceiling-server",
        choices=("granian", "gunicorn"),
        default="granian",
        help="serve ceiling and ceiling-replay as idp (granian, idp's ASGI bridge) or as "
        "idp-gunicorn (default granian)",
    )
    parser.add_argument(
        "--node-workers", type=int, default=2, help="processes of node-cluster (default 2)"
    )
    parser.add_argument(
        "--idp-args", default="", help="more `idp serve` flags for idp and idp-gunicorn"
    )
    parser.add_argument(
        "--ceiling-args",
        default="",
        help="more granian (or gunicorn) flags for the ceiling (to match --idp-args)",
    )
    parser.add_argument(
        "--pg-options", default="", help="more `postgres` server options, e.g. '-c fsync=off'"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="repeat everything R times, server order flipped every round; the tables "
        f"show medians and per-round ratios (default {DEFAULT_ROUNDS}, 1 with --quick)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="wrk request timeout in seconds (default 30)"
    )
    parser.add_argument(
        "--rate-guess",
        type=float,
        default=4000.0,
        help="tokens/s assumed for the first warm-up of a server, to size its file of "
        "pre-signed assertions (default 4000; later files are sized from measured rates)",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=0,
        help="assertions to pre-sign per algorithm before the first run (default 0: "
        "signed as the runs need them, always before the run that uses them)",
    )
    parser.add_argument(
        "--py-spy",
        type=int,
        default=0,
        metavar="S",
        help="after the measurement, profile one idp worker for S seconds per token "
        "scenario under extra (unmeasured) load with py-spy, and summarise the profile",
    )
    parser.add_argument(
        "--py-spy-dir",
        default=str(Path(tempfile.gettempdir()) / "idp-token-bench-profiles"),
        help="where the py-spy folded stacks go (default $TMPDIR/idp-token-bench-profiles)",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument(
        "--record", action="store_true", help="append the report to bench/RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.full:
        args.connections = args.connections or FULL_CONNECTIONS
        args.scenarios = args.scenarios or ",".join(SCENARIOS)
    args.connections = args.connections or DEFAULT_CONNECTIONS
    args.scenarios = args.scenarios or DEFAULT_SCENARIOS
    args.duration = args.duration or 10
    if args.rounds is None:
        args.rounds = 1 if args.quick else DEFAULT_ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        args.connection_list = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        parser.error("--connections must be comma-separated integers")
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(args.server_list) - set(SERVERS):
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    if unknown := set(args.scenario_list) - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if "idp" not in args.server_list:
        parser.error("--servers must include idp (the client set-up uses its CLI)")
    if args.node_workers < 1:
        args.server_list = [s for s in args.server_list if s != "node-cluster"]
    if not args.connection_list or min(args.connection_list) < 1:
        parser.error("--connections needs at least one positive count")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 600] s and --warmup in [0, 60] s")
    return args


def servers_memory(servers: dict[str, Server]) -> dict[str, TreeMemory]:
    """RSS and PSS of each running server's process tree (storage servers apart)."""
    table = proc_table()
    memory = {}
    for name, server in servers.items():
        if server.process is not None and server.process.poll() is None:
            _, pids = tree_ticks(table, [server.process.pid])
            memory[name] = tree_memory(pids)
    return memory


def check_tools(args: argparse.Namespace) -> None:
    if not shutil.which("wrk"):
        raise BenchError("wrk not found: apt-get install -y wrk")
    if any(s.startswith("node") for s in args.server_list):
        if not shutil.which("node"):
            raise BenchError("node not found: apt-get install -y nodejs npm (Node >= 18)")
        major = int(run(["node", "--version"], "node --version").strip().lstrip("v").split(".")[0])
        if major < 18:
            raise BenchError(f"oidc-provider 8 needs Node >= 18, found {major}")
        if not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
            log("npm: installing bench/node (npm ci)")
            run(["npm", "ci", "--no-audit", "--no-fund"], "npm ci", cwd=NODE_DIR, timeout=600)


def node_config(issuer: str, keys: dict, clients: Clients) -> dict:
    def pkjwt(client_id: str, alg: str) -> dict:
        return {
            "client_id": client_id,
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": alg,
            "jwks": {"keys": [keys[alg]["public"]]},
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "scope": SCOPE,
        }

    return {
        "issuer": issuer,
        "resource": f"{issuer}/api",
        "scope": SCOPE,
        "ttl": ACCESS_TOKEN_TTL,
        "clock_tolerance": CLOCK_SKEW,
        "cookie_key": secrets.token_urlsafe(32),
        "signing_jwk": keys["server"],
        "clients": [
            pkjwt(clients.es256, "ES256"),
            pkjwt(clients.rs256, "RS256"),
            {
                "client_id": clients.basic,
                "client_secret": clients.basic_secret,
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["client_credentials"],
                "response_types": [],
                "redirect_uris": [],
                "scope": SCOPE,
            },
        ],
    }


def ceiling_config(issuer: str, keys: dict, clients: Clients) -> dict:
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oidc/token",
        "ttl": ACCESS_TOKEN_TTL,
        "clock_skew": CLOCK_SKEW,
        "max_assertion_lifetime": ASSERTION_LIFETIME,
        "signing_jwk": keys["server"],
        "clients": {
            clients.es256: {"scope": SCOPE, "jwk": keys["ES256"]["public"]},
            clients.rs256: {"scope": SCOPE, "jwk": keys["RS256"]["public"]},
            clients.basic: {
                "scope": SCOPE,
                "secret_sha256": hashlib.sha256(clients.basic_secret.encode()).hexdigest(),
            },
        },
    }


def measured(server_name: str, scenario: str) -> bool:
    """The password grant is idp's alone (every idp server); ceiling-replay differs from
    the ceiling only where there is an assertion to claim."""
    if scenario == "password":
        return server_name in IDP_SERVERS
    return server_name != "ceiling-replay" or scenario in ("es256", "rs256")


def smoke_test(server: Server, bench: Bench, scenarios: list[str]) -> None:
    """One request per scenario, so a misconfiguration stops the run before measuring."""
    for scenario in scenarios:
        if not measured(server.name, scenario):
            continue
        method, path, source, auth, expect = bench.scenario_request(server, scenario)
        headers = {"Authorization": auth} if auth != "-" else {}
        if scenario in ("es256", "rs256"):
            alg = scenario.upper()
            index = server.cursors.get(alg, 0)
            bench.pools[alg].ensure(index + 1)
            body = bench.pools[alg].bodies[index]
            server.cursors[alg] = index + 1
        else:
            body = source[1:] if source.startswith("=") else None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = requests.request(
            method, server.base + path, data=body, headers=headers, timeout=30
        )
        ok = response.status_code == expect
        if ok and path == "/oidc/token":
            ok = "access_token" in response.json()
        if not ok:
            raise BenchError(
                f"{server.name} {SCENARIO_LABELS[scenario]}: HTTP {response.status_code} "
                f"{response.text[:500]}\n{tail(server.logfile)}"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="idp-token-bench-"))
    pg = Postgres(tmp, args.pg_options)
    redis = Redis(tmp)
    servers: dict[str, Server] = {}
    bench = Bench(args, tmp)
    notes: list[str] = []
    profiles: dict[str, tuple[Path, list[str]]] = {}
    memory: dict[str, TreeMemory] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in stops}
    status = 0
    report = ""
    try:
        check_tools(args)
        load_before = os.getloadavg()
        pg.start()
        redis.start()
        idp = IdpServer(tmp, args, pg, redis)
        servers["idp"] = idp
        log(f"idp: provisioning in {idp.tmp}")
        keys = generate_keys()
        bench.clients = idp.provision(keys)
        issuer = idp.issuer
        for name in ("idp-gunicorn", "idp-granian-wsgi"):
            if name in args.server_list:
                servers[name] = IdpServer(tmp, args, pg, redis, name, issuer)
        for alg in ("ES256", "RS256"):
            client_id = getattr(bench.clients, alg.lower())
            bench.pools[alg] = AssertionPool(alg, keys[alg], client_id, issuer)
        if "node" in args.server_list:
            servers["node"] = NodeServer(tmp, 0, node_config(issuer, keys, bench.clients), None)
        if "node-cluster" in args.server_list:
            config = node_config(issuer, keys, bench.clients)
            servers["node-cluster"] = NodeServer(tmp, args.node_workers, config, redis)
        if "ceiling" in args.server_list:
            servers["ceiling"] = CeilingServer(
                tmp, args, ceiling_config(issuer, keys, bench.clients)
            )
        if "ceiling-replay" in args.server_list:
            servers["ceiling-replay"] = CeilingServer(
                tmp, args, ceiling_config(issuer, keys, bench.clients), redis
            )
        for alg in ("ES256", "RS256"):
            if alg.lower() in args.scenario_list:
                bench.pools[alg].ensure(args.pool)
        for server in servers.values():
            server.start()
            smoke_test(server, bench, args.scenario_list)
            log(f"{server.name}: ready at {server.base}")
        start_fp = idp.fingerprints[0]
        names = [name for name in SERVERS if name in servers]
        for round_no in range(1, args.rounds + 1):
            order = names if round_no % 2 else names[::-1]  # flip the order every round
            for connections in args.connection_list:
                for scenario in args.scenario_list:
                    for name in order:
                        if not measured(name, scenario):
                            continue
                        if not all(pool.fresh() for pool in bench.pools.values()):
                            raise BenchError("the pre-signed assertions are about to expire")
                        bench.measure(servers[name], scenario, connections, round_no)
        load_after = os.getloadavg()
        end_fp = fingerprint()
        memory = servers_memory(servers)
        if args.py_spy:
            for scenario in args.scenario_list:
                if scenario == "jwks":
                    continue
                out = Path(args.py_spy_dir) / f"py-spy-idp-{scenario}.folded"
                out.parent.mkdir(parents=True, exist_ok=True)
                log(f"py-spy: profiling an idp worker, {SCENARIO_LABELS[scenario]} ...")
                profiles[scenario] = (out, bench.profile_idp(idp, scenario, out))
    except BenchError as exc:
        log(f"error: {exc}")
        status = 2
    except KeyboardInterrupt:
        log("interrupted; stopping every server")
        status = 130
    finally:
        bench.kill_wrk()
        for server in servers.values():
            with contextlib.suppress(Exception):
                server.stop()
        redis.stop()
        pg.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.keep_tmp:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if status:
        return status

    elapsed = time.monotonic() - began
    signing = sum(pool.sign_seconds for pool in bench.pools.values())
    if any(row.result.exhausted for row in bench.rows):
        notes.append("some runs ran out of pre-signed assertions (marked): raise --rate-guess")
    if any(not row.cpu_valid for row in bench.rows):
        notes.append("a server process was replaced during a run: its CPU is not shown")
    notes.append(
        f"idp serves with IDP_ASSERTION_MAX_LIFETIME={ASSERTION_LIFETIME} (default 300) so "
        "that assertions pre-signed at the start stay valid for the whole run"
    )
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "machine": machine(),
        "load": " / ".join(" ".join(f"{x:.2f}" for x in la) for la in (load_before, load_after)),
        "code": describe_code(start_fp, end_fp),
        "software": software(pg, redis),
        "elapsed": f"{elapsed / 60:.1f} min ({signing:.0f} s of it pre-signing assertions)",
        "notes": notes,
    }
    report = render(args, info, bench, servers, memory)
    for scenario, (path, top) in profiles.items():
        measured_cpu = [r.cpu_ms("server") for r in bench.rows if (r.server, r.scenario) == (
            "idp", scenario)]  # fmt: skip
        report += (
            f"\npy-spy, one idp worker, {SCENARIO_LABELS[scenario]}, {args.py_spy} s under "
            f"unmeasured load, samples of the thread holding the GIL (folded stacks in {path}); "
            f"measured idp server CPU: {_fmt(statistics.median(measured_cpu), 2)} ms/token "
            "(all processes and threads, Rust and kernel included):\n\n"
            + "\n".join(f"    {line}" for line in top)
            + "\n"
        )
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    failed = any(row.result.errors for row in bench.rows) or any(
        not replay.passed for replay in bench.replays if replay.server in IDP_SERVERS
    )
    if args.record:
        record(report)
        log(f"recorded in {os.path.relpath(RESULTS)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
