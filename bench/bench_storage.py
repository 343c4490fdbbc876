"""The private PostgreSQL and Redis of idp's production profile in token_bench.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from bench_common import HOST, PG_CTL, BenchError, log, run, stop_group, wait_until
from password_grant import free_port

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
