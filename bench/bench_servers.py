"""The servers token_bench.py measures: idp on granian and gunicorn, node-oidc-provider
(one process and a cluster) and the ceiling apps."""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from bench_common import (
    ACCESS_TOKEN_TTL,
    ASSERTION_LIFETIME,
    BENCH,
    CLOCK_SKEW,
    CLOCK_TICKS,
    HOST,
    IDP_SERVERS,
    NODE_DIR,
    PASSWORD,
    PASSWORD_SCOPE,
    REDIS_DB,
    REPO,
    SCOPE,
    USERNAME,
    BenchError,
    fingerprint,
    granian_wsgi_argv,
    gunicorn_settings,
    proc_table,
    run,
    serving,
    stop_group,
    tree_ticks,
    wait_until,
)
from bench_storage import Postgres, Redis
from password_grant import free_port

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
