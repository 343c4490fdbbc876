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
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from bench_assertions import AssertionPool, generate_keys
from bench_common import (
    ACCESS_TOKEN_TTL,
    ASSERTION_LIFETIME,
    CLOCK_SKEW,
    DEFAULT_CONNECTIONS,
    DEFAULT_ROUNDS,
    DEFAULT_SCENARIOS,
    DEFAULT_SERVERS,
    FULL_CONNECTIONS,
    IDP_SERVERS,
    NODE_DIR,
    RESULTS,
    SCENARIO_LABELS,
    SCENARIOS,
    SCOPE,
    SERVERS,
    BenchError,
    fingerprint,
    log,
    proc_table,
    run,
    tail,
    tree_ticks,
)
from bench_report import _fmt, command_line, describe_code, machine, record, render, software
from bench_run import Bench
from bench_servers import CeilingServer, Clients, IdpServer, NodeServer, Server
from bench_storage import Postgres, Redis
from proc_memory import TreeMemory, tree_memory

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
