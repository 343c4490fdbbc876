"""token_bench.py's report: the tables, the machine and software, and RESULTS.md."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench_common import NODE_DIR, RESULTS, SCENARIO_LABELS, SCENARIOS, SERVERS, git, run
from bench_run import Bench, Row
from bench_servers import Server
from bench_storage import Postgres, Redis
from bench_summary import summary
from proc_memory import TreeMemory

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
