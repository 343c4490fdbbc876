"""The user directory at scale: GET /users pages and filters against GET /users/{id}.

Seeds N users into one tenant of a private PostgreSQL (one INSERT ... SELECT over
generate_series, plus one used and one unused refresh token per user), serves idp with
``idp serve --workers W`` and a private Redis, and measures with wrk (4 connections):

* ``GET /users/{id}`` (the reference rate),
* ``GET /users?limit=50`` (the first page),
* ``GET /users?limit=50&after=<cursor>`` (a page 100 users from the end),
* ``?email=``, ``?clientUserId=``, ``?username=`` (one user each) and ``?locked=true``.

It prints a table (req/s, p50, the ratio to ``GET /users/{id}``) and the EXPLAIN
(ANALYZE, BUFFERS) plans of each list query and its total, as idp runs them.

Usage (from the repository root; needs wrk, PostgreSQL and redis-server)::

    .venv/bin/python bench/data_scale.py [--users N] [--duration S] [--workers W]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from bench_common import HOST, BenchError, log, run, stop_group, tail, wait_until
from bench_storage import Postgres, Redis
from password_grant import free_port

REPO = Path(__file__).resolve().parent.parent
CONNECTIONS = 4
LOCKED_EVERY = 10_000  # one user in this many is locked by an operator

# Every user is managed by the bench client, has an email and a clientUserId, and was
# created one millisecond after the previous one; two refresh tokens per user, one used.
SEED_USERS = """
INSERT INTO users (id, tenant_id, client_id, client_user_id, username, username_key, email,
                   provider, scopes, user_type, managed_by, locked, bad_attempts,
                   created_at, updated_at)
SELECT gen_random_uuid()::text, %(tenant)s, %(client)s, 'cu-' || i, 'user' || i, 'user' || i,
       'user' || i || '@example.com', 'local', '[]'::json, 'user', %(client)s,
       i %% %(locked_every)s = 0, 0,
       timestamp '2024-01-01' + i * interval '1 millisecond',
       timestamp '2024-01-01' + i * interval '1 millisecond'
FROM generate_series(1, %(n)s) AS i
"""
SEED_TOKENS = """
INSERT INTO refresh_tokens (id, token_hash, family_id, client_id, user_id, tenant_id, scope,
                            auth_time, issued_at, used_at)
SELECT gen_random_uuid()::text, md5(u.id || t.kind), u.id, %(client)s, u.id, u.tenant_id,
       'openid offline_access', u.created_at, u.created_at,
       CASE WHEN t.kind = 'used' THEN u.created_at END
FROM users AS u CROSS JOIN (VALUES ('used'), ('live')) AS t(kind)
"""


def wrk(url: str, token: str, duration: int) -> tuple[float, float]:
    """Requests per second and the p50 latency in ms; every answer must be a 200."""
    script = Path(tempfile.gettempdir()) / "idp-data-scale-status.lua"
    script.write_text(
        "local bad = 0\n"
        "function response(status, headers, body) if status ~= 200 then bad = bad + 1 end end\n"
        "function done(summary, latency, requests) io.write('non200 ', bad, '\\n') end\n"
    )
    output = run(
        ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{duration}s", "--latency",
         "-s", str(script), "-H", f"Authorization: Bearer {token}", url],
        f"wrk {url}", timeout=duration + 60,
    )  # fmt: skip
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    errors = re.search(r"non200 (\d+)", output)
    if not rps or not p50:
        raise BenchError(f"could not read wrk's output for {url}:\n{output}")
    if errors and int(errors.group(1)):
        raise BenchError(f"{url}: {errors.group(1)} answers were not 200")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return float(rps.group(1)), float(p50.group(1)) * scale


class Idp:
    def __init__(self, tmp: Path, pg: Postgres, redis: Redis, workers: int) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.workers = workers
        self.process: subprocess.Popen | None = None
        self.logfile = tmp / "idp.log"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("IDP_") and k != "PYTHONPATH"
        }
        metrics = tmp / "metrics"
        metrics.mkdir()
        self.env.update(
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
            IDP_ISSUER=self.base,
            IDP_DATABASE_URL=pg.url,
            IDP_REDIS_URL=redis.url(0),
            IDP_KEYS_DIR=str(tmp / "keys"),
            PROMETHEUS_MULTIPROC_DIR=str(metrics),
        )

    def cli(self, *args: str) -> str:
        return run(
            [sys.executable, "-m", "idp", *args], f"idp {' '.join(args[:2])}",
            env=self.env, cwd=self.tmp, timeout=600,
        )  # fmt: skip

    def start(self) -> None:
        with self.logfile.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "idp", "serve", "--host", HOST, "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=self.env, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        def healthy() -> bool:
            return requests.get(f"{self.base}/healthz", timeout=2).status_code == 200

        wait_until(healthy, 60, "idp serve", self.process, self.logfile)

    def stop(self) -> None:
        stop_group(self.process)


def app_context(env: dict[str, str]) -> Any:
    """idp's own app on the bench database, to run its list queries and sign a cursor."""
    sys.path.insert(0, str(REPO))
    from idp.app import create_app
    from idp.settings import load_settings

    return create_app(load_settings({k: v for k, v in env.items() if k.startswith("IDP_")}))


def explain(app: Any, tenant_id: int, filters: dict[str, Any], after: Any) -> str:
    from sqlalchemy import event

    from idp.models import db
    from idp.users import service

    statements: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM users" in statement or "FROM user_counts" in statement:
            statements.append((statement, parameters))

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", keep)
        try:
            service.list_page(tenant_id, filters, 50, 0, after)
        finally:
            event.remove(db.engine, "before_cursor_execute", keep)
        db.session.rollback()
        plans = []
        connection = db.session.connection()
        for statement, parameters in statements:
            rows = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}", parameters
            ).all()
            plans.append("\n".join(f"    {row[0]}" for row in rows))
        db.session.rollback()
    return "\n\n".join(plans)


def seed(pg: Postgres, idp: Idp, users: int, client_id: str) -> None:
    import psycopg

    started = time.monotonic()
    with psycopg.connect(pg.url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        tenant = conn.execute("SELECT id FROM tenants WHERE name = 'default'").fetchone()
        assert tenant is not None
        params = {
            "tenant": tenant[0],
            "client": client_id,
            "n": users,
            "locked_every": LOCKED_EVERY,
        }
        conn.execute(SEED_USERS, params)
        log(f"seed: {users} users in {time.monotonic() - started:.0f} s")
        conn.execute(SEED_TOKENS, params)
        conn.commit()
        log(f"seed: {2 * users} refresh tokens, {time.monotonic() - started:.0f} s in all")
    with psycopg.connect(pg.url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute("VACUUM ANALYZE users")
        c.execute("VACUUM ANALYZE refresh_tokens")
        c.execute("VACUUM ANALYZE user_counts")
    log(f"seed: done and analysed in {time.monotonic() - started:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if args.users < 200:
        parser.error("--users must be at least 200")
    tmp = Path(tempfile.mkdtemp(prefix="idp-data-scale-"))
    pg = Postgres(tmp, "-c shared_buffers=256MB -c fsync=off")
    redis = Redis(tmp)
    idp: Idp | None = None
    try:
        pg.start()
        redis.start()
        idp = Idp(tmp, pg, redis, args.workers)
        idp.cli("init")
        client = json.loads(
            idp.cli(
                "clients",
                "create",
                "--name",
                "bench",
                "--auth-method",
                "client_secret_basic",
                "--grant-types",
                "client_credentials",
                "--scope",
                "user:read",
                "--json",
            )
        )
        seed(pg, idp, args.users, client["client_id"])
        return measure(args, idp, client)
    except BenchError as exc:
        print(f"data_scale: {exc}", file=sys.stderr)
        if idp is not None:
            print(tail(idp.logfile), file=sys.stderr)
        return 1
    finally:
        if idp is not None:
            idp.stop()
        redis.stop()
        pg.stop()


def measure(args: argparse.Namespace, idp: Idp, client: dict[str, str]) -> int:
    from sqlalchemy import select

    from idp.models import Tenant, User, db
    from idp.runtime import runtime
    from idp.users import paging

    idp.start()
    auth = (quote(client["client_id"], safe=""), quote(client["client_secret"], safe=""))
    response = requests.post(
        f"{idp.base}/oidc/token", data={"grant_type": "client_credentials"}, auth=auth, timeout=30
    )
    if response.status_code != 200:
        raise BenchError(f"token: HTTP {response.status_code} {response.text}")
    token = response.json()["access_token"]
    app = app_context(idp.env)
    middle = args.users // 2
    with app.app_context():
        tenant_id = db.session.scalar(select(Tenant.id).where(Tenant.name == "default"))
        near_end = db.session.execute(
            select(User.created_at, User.id)
            .where(User.tenant_id == tenant_id, User.deleted_at.is_(None))
            .order_by(User.created_at.desc(), User.id.desc())
            .offset(100)
            .limit(1)
        ).one()
        position = paging.Position(near_end.created_at, near_end.id)
        key = runtime(app).server_secrets.get(paging.SECRET_NAME)
        cursor = paging.encode(key, tenant_id, {}, position)
        user_id = db.session.scalar(select(User.id).where(User.username_key == f"user{middle}"))
    assert tenant_id is not None and user_id is not None
    variants: list[tuple[str, str, dict[str, Any], Any]] = [
        ("GET /users/{id}", f"/users/{user_id}", {}, None),
        ("GET /users?limit=50 (first page)", "/users?limit=50", {}, None),
        ("GET /users?limit=50&after= (100 from the end)", f"/users?limit=50&after={cursor}", {},
         position),
        ("GET /users?email=", f"/users?email=user{middle}@example.com",
         {"email": f"user{middle}@example.com"}, None),
        ("GET /users?clientUserId=", f"/users?clientUserId=cu-{middle}",
         {"clientUserId": f"cu-{middle}"}, None),
        ("GET /users?username=", f"/users?username=user{middle}", {"username": f"user{middle}"},
         None),
        ("GET /users?locked=true", "/users?locked=true", {"locked": True}, None),
    ]  # fmt: skip
    for _label, path, _filters, _after in variants:  # each answers, and warms its index
        check = requests.get(
            f"{idp.base}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        if check.status_code != 200:
            raise BenchError(f"{path}: HTTP {check.status_code} {check.text[:300]}")
        wrk(f"{idp.base}{path}", token, 2)
    results = []
    for label, path, _filters, _after in variants:
        rps, p50 = wrk(f"{idp.base}{path}", token, args.duration)
        results.append((label, rps, p50))
        log(f"{label}: {rps:.0f} req/s, p50 {p50:.1f} ms")
    reference = results[0][1]
    print(f"\n{args.users:,} users, {args.workers} workers, wrk with {CONNECTIONS} connections,"
          f" {args.duration} s each\n")  # fmt: skip
    print("| request | req/s | p50 ms | x GET /users/{id} |")
    print("|---|---:|---:|---:|")
    for label, rps, p50 in results:
        print(f"| `{label}` | {rps:,.0f} | {p50:.1f} | {rps / reference:.2f} |")
    print("\nEXPLAIN (ANALYZE, BUFFERS) of each list query and its total, as idp runs them:")
    for label, _path, filters, after in variants[1:]:
        print(f"\n{label}:\n{explain(app, tenant_id, filters, after)}")
    if args.json:
        figures = [{"request": label, "rps": rps, "p50_ms": p50} for label, rps, p50 in results]
        print(json.dumps({"users": args.users, "results": figures}))
    worst = min(rps / reference for _label, rps, _p50 in results[1:])
    with contextlib.suppress(Exception), app.app_context():
        db.engine.dispose()
    print(f"\nslowest list variant: {worst:.2f}x GET /users/{{id}} (acceptance: ≥ 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
