"""Password-grant benchmark.

Starts a throw-away idp (SQLite, fresh keys, one client, one user) on a free
loopback port with ``idp serve``, then measures against that same server, in
the same run:

* ``GET /healthz``                 -- the cost of the HTTP stack alone;
* ``client_credentials`` token     -- the same endpoint, without argon2 (baseline);
* ``password`` token               -- the grant under test, always the right password.

Speed on this machine is only meaningful relative to a baseline taken in the
same run, so the figures that matter are the ratios password/client_credentials.
The scenarios are interleaved over ``--rounds`` to spread drift of a shared
machine over all of them, and the per-round ratios are reported as a range.

Usage (from the repository root)::

    .venv/bin/python bench/password_grant.py [--requests N] [--concurrency C] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from urllib.parse import quote

import requests

REPO = Path(__file__).resolve().parent.parent
USERNAME = "bench"
PASSWORD = "Bench-Password-1"  # noqa: S105 -- a throw-away user on a throw-away server
CLIENT_SCOPE = "openid user:self"
REQUEST_TIMEOUT = 30.0
VERIFY_SAMPLES = 20

# One request against the server: returns None on success, else a short error label.
Call = Callable[[requests.Session], str | None]


# -- statistics --------------------------------------------------------------------


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class PhaseResult:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: Counter = field(default_factory=Counter)
    elapsed: float = 0.0  # wall-clock seconds of the phase

    def merge(self, other: PhaseResult) -> None:
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        self.elapsed += other.elapsed

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def p(self, pct: float) -> float:
        """Latency percentile in milliseconds (nan without a successful request)."""
        if not self.latencies:
            return math.nan
        return percentile(sorted(self.latencies), pct) * 1000


def run_phase(call: Call, total: int, concurrency: int, time_limit: float) -> PhaseResult:
    """Issue ``total`` requests from ``concurrency`` threads, stopping early at ``time_limit``."""
    result = PhaseResult()
    lock = threading.Lock()
    issued = 0
    start_gate = threading.Barrier(concurrency + 1)
    stop = threading.Event()  # set when the caller is interrupted (Ctrl-C)

    def worker() -> None:
        nonlocal issued
        session = requests.Session()
        latencies: list[float] = []
        errors: Counter = Counter()
        start_gate.wait()
        try:
            while True:
                with lock:
                    if issued >= total or stop.is_set() or time.perf_counter() > deadline:
                        break
                    issued += 1
                began = time.perf_counter()
                try:
                    error = call(session)
                except requests.RequestException as exc:
                    error = type(exc).__name__
                took = time.perf_counter() - began
                if error is None:
                    latencies.append(took)
                else:
                    errors[error] += 1
        finally:
            session.close()
            with lock:
                result.latencies.extend(latencies)
                result.errors.update(errors)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        started = time.perf_counter()
        deadline = started + time_limit
        try:
            start_gate.wait()
            for future in futures:
                future.result()
        except BaseException:
            stop.set()
            start_gate.abort()
            raise
        result.elapsed = time.perf_counter() - started
    return result


# -- the requests ------------------------------------------------------------------


def healthz_call(base: str) -> Call:
    url = f"{base}/healthz"

    def call(session: requests.Session) -> str | None:
        response = session.get(url, timeout=REQUEST_TIMEOUT)
        return None if response.status_code == 200 else f"HTTP {response.status_code}"

    return call


def token_call(base: str, client_id: str, client_secret: str, form: dict[str, str]) -> Call:
    url = f"{base}/oidc/token"
    # RFC 6749 §2.3.1: the credentials are form-encoded before the Basic encoding.
    auth = (quote(client_id, safe=""), quote(client_secret, safe=""))

    def call(session: requests.Session) -> str | None:
        response = session.post(url, data=form, auth=auth, timeout=REQUEST_TIMEOUT)
        if response.status_code != 200:
            try:
                detail = response.json().get("error", "")
            except ValueError:
                detail = ""
            return f"HTTP {response.status_code} {detail}".strip()
        if "access_token" not in response.json():
            return "no access_token"
        return None

    return call


# -- the server under test ---------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BenchServer:
    """A fresh idp in a temporary directory, served by ``idp serve`` on loopback."""

    def __init__(self, idp: Path, workers: int) -> None:
        self.idp = idp
        self.workers = workers
        self.tmp = Path(tempfile.mkdtemp(prefix="idp-bench-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        metrics_dir = self.tmp / "metrics"
        metrics_dir.mkdir()
        # Inherit nothing idp-specific from the caller (no IDP_CONFIG, no Redis).
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        self.env.update(
            IDP_DATABASE_URL=f"sqlite:///{self.tmp}/idp.sqlite3",
            IDP_KEYS_DIR=str(self.tmp / "keys"),
            IDP_ISSUER=self.base,
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        )
        self.log_path = self.tmp / "server.log"
        self.process: subprocess.Popen | None = None
        self.client_id = ""
        self.client_secret = ""

    def _cli(self, *args: str, stdin: str | None = None) -> str:
        completed = subprocess.run(
            [str(self.idp), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"idp {' '.join(args)} failed: {completed.stderr.strip()}")
        return completed.stdout

    def provision(self) -> None:
        self._cli("init")
        client = json.loads(
            self._cli(
                "clients",
                "create",
                "--name",
                "bench",
                "--auth-method",
                "client_secret_basic",
                "--grant-types",
                "password,refresh_token,client_credentials",
                "--scope",
                CLIENT_SCOPE,
                "--json",
            )
        )
        self.client_id = client["client_id"]
        self.client_secret = client["client_secret"]
        self._cli("users", "create", "--username", USERNAME, "--password-stdin", stdin=PASSWORD)

    def start(self, wait: float = 60.0) -> None:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(self.idp),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: gunicorn master and workers
        )
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"idp serve exited ({self.process.returncode}):\n{self.log()}")
            try:
                if requests.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"idp serve not healthy after {wait:.0f} s:\n{self.log()}")

    def log(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group we created for it
                process.wait(timeout=10)
        self.process = None

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


# -- in-process argon2 reference ---------------------------------------------------


@dataclass
class Argon2Reference:
    params: dict[str, int]
    verify_ms: list[float]  # wall clock per call
    cpu_ms: float  # process CPU time per call (all argon2 lanes/threads), mean

    @property
    def median_ms(self) -> float:
        return statistics.median(self.verify_ms)

    @property
    def ceiling_rps(self) -> float:
        """Verifies per second if every core did nothing but argon2."""
        return (os.cpu_count() or 1) * 1000 / self.cpu_ms


def measure_argon2(samples: int) -> Argon2Reference:
    from idp.users.passwords import HASHER

    params = {
        "time_cost": HASHER.time_cost,
        "memory_cost": HASHER.memory_cost,
        "parallelism": HASHER.parallelism,
        "hash_len": HASHER.hash_len,
    }
    encoded = HASHER.hash(PASSWORD)
    HASHER.verify(encoded, PASSWORD)  # warm-up: first allocation of the memory
    timings = []
    cpu_began = time.process_time()
    for _ in range(samples):
        began = time.perf_counter()
        HASHER.verify(encoded, PASSWORD)
        timings.append((time.perf_counter() - began) * 1000)
    cpu_ms = (time.process_time() - cpu_began) * 1000 / samples
    return Argon2Reference(params, timings, cpu_ms)


# -- the report --------------------------------------------------------------------

SCENARIOS = (
    ("healthz", "`GET /healthz` (baseline 2)"),
    ("client_credentials", "`client_credentials` token (baseline 1)"),
    ("password", "`password` token"),
)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def render(
    args: argparse.Namespace,
    command: str,
    totals: dict[str, PhaseResult],
    rounds: list[dict[str, PhaseResult]],
    argon2: Argon2Reference,
) -> str:
    params = argon2.params
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Password grant benchmark",
        "",
        f"- date: {now}",
        f"- machine: nproc={os.cpu_count()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} {platform.machine()}",
        f"- command: `{command}`",
        f"- code: {code_version()}",
        f"- server: `idp serve --workers {args.workers}` (gunicorn sync workers), SQLite, "
        "loopback; fresh temp dir, keys, client and user",
        f"- load: {args.concurrency} client threads (one `requests.Session` each), "
        f"{args.requests} requests per scenario over {args.rounds} interleaved round(s), "
        f"{args.warmup} warm-up requests per scenario per round, "
        f"{args.time_limit:.0f} s cap per phase",
        f"- argon2id (`idp.users.passwords.HASHER`, "
        f"argon2-cffi {metadata.version('argon2-cffi')}): "
        f"time_cost={params['time_cost']}, memory_cost={params['memory_cost']} KiB "
        f"({params['memory_cost'] / 1024:g} MiB), parallelism={params['parallelism']}, "
        f"hash_len={params['hash_len']}",
        f"- in-process `HASHER.verify` (bench process, server idle): median "
        f"{argon2.median_ms:.1f} ms over {len(argon2.verify_ms)} calls "
        f"(min {min(argon2.verify_ms):.1f}, max {max(argon2.verify_ms):.1f}); "
        f"{argon2.cpu_ms:.1f} ms CPU per call, so an argon2-only ceiling of "
        f"{argon2.ceiling_rps:.1f} verifies/s on {os.cpu_count()} cores",
        "",
        "| scenario | ok | errors | req/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in SCENARIOS:
        r = totals[key]
        lines.append(
            f"| {label} | {r.ok} | {r.error_count} | {r.rps:.1f} | {r.p(50):.1f} | {r.p(99):.1f} |"
        )

    pw, cc = totals["password"], totals["client_credentials"]
    per_round_rps = [_ratio(r["password"].rps, r["client_credentials"].rps) for r in rounds]
    per_round_p50 = [_ratio(r["password"].p(50), r["client_credentials"].p(50)) for r in rounds]

    def spread(values: list[float], fmt: str) -> str:
        if len(values) < 2:
            return "-"
        return f"{format(min(values), fmt)} to {format(max(values), fmt)}"

    lines += [
        "",
        "| ratio (same run, same server) | value | per-round range |",
        "|---|---:|---:|",
        f"| throughput password / client_credentials | {_ratio(pw.rps, cc.rps):.3f} "
        f"| {spread(per_round_rps, '.3f')} |",
        f"| p50 password / client_credentials | {_ratio(pw.p(50), cc.p(50)):.1f} "
        f"| {spread(per_round_p50, '.1f')} |",
        f"| p50 password / in-process verify | {_ratio(pw.p(50), argon2.median_ms):.2f} | - |",
        f"| throughput password / argon2-only ceiling | "
        f"{_ratio(pw.rps, argon2.ceiling_rps):.2f} | - |",
    ]
    failed = {key: totals[key].errors for key, _ in SCENARIOS if totals[key].errors}
    if failed:
        lines += ["", "Errors:"]
        for key, errors in failed.items():
            detail = ", ".join(f"{label} x{count}" for label, count in errors.most_common())
            lines.append(f"- {key}: {detail}")
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------


def code_version() -> str:
    """The commit measured, and any uncommitted change to the served code."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "idp", "pyproject.toml"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not status:
        return f"commit {commit}, clean"
    changed = ", ".join(line[3:] for line in status)
    return f"commit {commit} plus uncommitted changes to: {changed}"


def command_line() -> str:
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(Path.cwd()))
    except ValueError:
        shown = str(python)
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    return shlex.join([shown, script, *sys.argv[1:]])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="per scenario (default 200)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of all scenarios (default 3)"
    )
    parser.add_argument(
        "--warmup", type=int, default=8, help="discarded requests per scenario per round"
    )
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="seconds cap for one phase (default 60)"
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "workers", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or args.time_limit <= 0:
        parser.error("--warmup must be >= 0 and --time-limit > 0")
    args.rounds = min(args.rounds, args.requests)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    idp = Path(sys.executable).parent / "idp"
    if not idp.exists():
        sys.exit(f"{idp} not found: run with the repository's venv (make .venv)")

    print("argon2: timing in-process HASHER.verify ...", file=sys.stderr)
    argon2 = measure_argon2(VERIFY_SAMPLES)

    server = BenchServer(idp, args.workers)
    try:
        print(f"server: provisioning in {server.tmp} ...", file=sys.stderr)
        server.provision()
        server.start()
        print(f"server: up at {server.base} ({args.workers} workers)", file=sys.stderr)
        calls = {
            "healthz": healthz_call(server.base),
            "client_credentials": token_call(
                server.base,
                server.client_id,
                server.client_secret,
                {"grant_type": "client_credentials"},
            ),
            "password": token_call(
                server.base,
                server.client_id,
                server.client_secret,
                {"grant_type": "password", "username": USERNAME, "password": PASSWORD},
            ),
        }
        totals = {key: PhaseResult() for key, _ in SCENARIOS}
        rounds: list[dict[str, PhaseResult]] = []
        per_round = [
            args.requests // args.rounds + (1 if i < args.requests % args.rounds else 0)
            for i in range(args.rounds)
        ]
        for index, count in enumerate(per_round, start=1):
            this_round: dict[str, PhaseResult] = {}
            for key, _ in SCENARIOS:
                if args.warmup:
                    run_phase(calls[key], args.warmup, args.concurrency, args.time_limit)
                result = run_phase(calls[key], count, args.concurrency, args.time_limit)
                this_round[key] = result
                totals[key].merge(result)
                print(
                    f"round {index}/{args.rounds} {key}: {result.ok} ok, "
                    f"{result.error_count} errors, {result.rps:.1f} req/s, "
                    f"p50 {result.p(50):.1f} ms",
                    file=sys.stderr,
                )
            rounds.append(this_round)
    except Exception:
        log = server.log()
        if log:
            print(f"--- server log (tail) ---\n{log}", file=sys.stderr)
        raise
    finally:
        server.cleanup()

    report = render(args, command_line(), totals, rounds, argon2)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    return 1 if any(r.error_count for r in totals.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
