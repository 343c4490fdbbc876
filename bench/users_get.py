"""GET /users/{userId} benchmark: a baseline build against the current tree, in one run.

Measures the throughput and latency of ``GET /users/{userId}`` (a bearer-authenticated
read of one user; the access token comes from a ``client_credentials`` grant with
``client_secret_basic`` and scope ``user:read``) for two builds of idp:

* baseline: a git ref (default ``d405e84``), checked out once with
  ``git worktree add --detach /tmp/idp-baseline-<ref> <ref>`` and reused afterwards;
* current: the working tree of this repository as it is when the server starts
  (or another ref with ``--current-ref``, for a baseline-vs-baseline check of the harness).

Each build gets its own temporary directory (SQLite database, keys, Prometheus folder),
its own ``python -m idp init``, client, token and user, and its own
``python -m idp serve --workers W`` on a free loopback port; the build is chosen with
``PYTHONPATH=<tree>`` and a working directory outside the repository. Both servers stay
up for the whole run and are measured in alternating rounds (the order flips every
round), each after a discarded warm-up, so drift of this shared 2-core machine spreads
over both. The figures that matter are the ratios current/baseline, taken per round
(the two builds measured back to back) and summarised by their median.

Only the embedded profile (SQLite, no Redis) is measured: bench/ has no PostgreSQL or
Redis set-up yet.

Usage (from the repository root)::

    .venv/bin/python bench/users_get.py [--baseline-ref REF] [--current-ref REF]
        [--rounds R] [--duration S] [--warmup S] [--concurrency C] [--workers W] [--record]
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import requests
from password_grant import PhaseResult, free_port, run_phase  # the same load loop

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
DEFAULT_BASELINE = "d405e84"
CLIENT_SCOPE = "user:create user:read"
USERNAME = "bench-user"
PASSWORD = "Correct-Horse-9!"  # noqa: S105 -- a throw-away user on a throw-away server
REQUEST_TIMEOUT = 30.0
MAX_REQUESTS_PER_PHASE = 1_000_000  # phases are bounded by --duration; this is a backstop
LOG_TAIL = 30
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A build could not be set up or served; the message says which and why."""


# -- the builds --------------------------------------------------------------------


def git(*args: str, cwd: Path = REPO) -> str:
    """Stdout of a git command (only trailing newlines removed: porcelain
    status lines start with a space)."""
    return subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout.rstrip("\n")


def worktree_for(ref: str) -> Path:
    """The detached worktree of ``ref`` under /tmp, created on first use."""
    try:
        commit = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise BenchError(f"{ref!r} is not a commit of {REPO}") from None
    path = Path(f"/tmp/idp-baseline-{re.sub(r'[^A-Za-z0-9._-]', '_', ref)}")  # noqa: S108
    if not path.exists():
        print(f"git: worktree add --detach {path} {ref}", file=sys.stderr)
        try:
            git("worktree", "add", "--detach", str(path), commit)
        except subprocess.CalledProcessError as exc:
            raise BenchError(f"git worktree add failed: {exc.stderr.strip()}") from None
    try:
        head = git("rev-parse", "HEAD", cwd=path)
    except (OSError, subprocess.CalledProcessError):
        raise BenchError(f"{path} exists but is not a git worktree; remove it") from None
    if head != commit:
        raise BenchError(
            f"{path} is at {head[:12]}, not at {ref} ({commit[:12]}); remove it "
            f"(git worktree remove {path}) and run again"
        )
    return path


def describe_tree(tree: Path) -> str:
    """The commit of ``tree`` and any uncommitted change to the served code."""
    try:
        commit = git("rev-parse", "--short", "HEAD", cwd=tree)
        status = git("status", "--porcelain", "--", "idp", "pyproject.toml", cwd=tree)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    if not status:
        return f"commit {commit}, clean"
    changed = ", ".join(line[3:] for line in status.splitlines())
    return f"commit {commit} plus uncommitted changes to: {changed}"


def fingerprint(tree: Path) -> str:
    """A short hash of the served code: every file under idp/ and pyproject.toml."""
    digest = hashlib.sha256()
    files = [p for p in (tree / "idp").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    for path in sorted([*files, tree / "pyproject.toml"]):
        try:
            content = path.read_bytes()
        except OSError:  # removed meanwhile: others edit the working tree
            content = b"<unreadable>"
        digest.update(str(path.relative_to(tree)).encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:12]


@dataclass
class Build:
    label: str  # "baseline" or "current"
    tree: Path
    code: str = ""  # describe_tree() when its server first started
    fingerprints: list[str] = field(default_factory=list)  # fingerprint() at every start

    def describe(self) -> str:
        seen = list(dict.fromkeys(self.fingerprints))
        if len(seen) <= 1:
            return f"{self.code}; code fingerprint {seen[0] if seen else '-'}"
        return (
            f"{self.code}; CHANGED DURING THE RUN: code fingerprints {', '.join(seen)} "
            f"over {len(self.fingerprints)} server starts"
        )


# -- the server of one build -------------------------------------------------------


class BuildServer:
    """A fresh idp of one build in a temporary directory, served on loopback."""

    def __init__(self, build: Build, workers: int) -> None:
        self.build = build
        self.workers = workers
        self.tmp = Path(tempfile.mkdtemp(prefix=f"idp-bench-{build.label}-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        metrics_dir = self.tmp / "metrics"
        metrics_dir.mkdir()
        # Inherit nothing idp-specific from the caller (no IDP_CONFIG, no Redis, no
        # PYTHONPATH); the build is chosen by PYTHONPATH and a cwd outside any tree.
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("IDP_") and k != "PYTHONPATH"
        }
        self.env.update(
            PYTHONPATH=str(build.tree),
            IDP_DATABASE_URL=f"sqlite:///{self.tmp}/idp.sqlite3",
            IDP_KEYS_DIR=str(self.tmp / "keys"),
            IDP_ISSUER=self.base,
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        )
        self.log_path = self.tmp / "server.log"
        self.process: subprocess.Popen | None = None
        self.stopping: subprocess.Popen | None = None  # signalled, exit not yet awaited
        self.client_id = ""
        self.client_secret = ""
        self.user_id = ""
        self.token = ""

    def fail(self, message: str, output: str = "") -> BenchError:
        tail = "\n".join(output.strip().splitlines()[-LOG_TAIL:])
        text = f"{self.build.label} ({self.build.tree}): {message}"
        return BenchError(f"{text}\n--- output (tail) ---\n{tail}" if tail else text)

    def _python(self, *args: str, stdin: str | None = None) -> str:
        try:
            completed = subprocess.run(
                [sys.executable, *args],
                env=self.env,
                cwd=self.tmp,
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
        except subprocess.TimeoutExpired as exc:
            raise self.fail(f"python {shlex.join(args)} timed out", str(exc.stderr or "")) from None
        if completed.returncode != 0:
            raise self.fail(
                f"python {shlex.join(args)} exited {completed.returncode}",
                completed.stderr or completed.stdout,
            )
        return completed.stdout

    def check_import(self) -> None:
        """Make sure ``import idp`` resolves to this build's tree, not the editable install."""
        found = Path(self._python("-c", "import idp; print(idp.__file__)").strip()).resolve()
        expected = (self.build.tree / "idp").resolve()
        if found.parent != expected:
            raise self.fail(f"import idp resolved to {found}, expected a module in {expected}")

    def provision(self) -> None:
        self.check_import()
        self._python("-m", "idp", "init")
        output = self._python(
            "-m", "idp", "clients", "create", "--name", "bench",
            "--auth-method", "client_secret_basic", "--grant-types", "client_credentials",
            "--scope", CLIENT_SCOPE, "--json",
        )  # fmt: skip
        try:
            client = json.loads(output)
            self.client_id, self.client_secret = client["client_id"], client["client_secret"]
        except (ValueError, KeyError, TypeError):
            raise self.fail("idp clients create --json gave no client_id/secret", output) from None

    def start(self, wait: float = 60.0) -> None:
        """Start ``idp serve`` (again) on this build's port and wait for /healthz."""
        self.wait_stopped()  # the previous server on this port
        if not self.build.code:
            self.build.code = describe_tree(self.build.tree)
        # gunicorn preloads the app in the master, so this is the code that is served.
        self.build.fingerprints.append(fingerprint(self.build.tree))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "idp", "serve", "--host", "127.0.0.1",
                    "--port", str(self.port), "--workers", str(self.workers),
                ],
                env=self.env,
                cwd=self.tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: gunicorn master and workers
            )  # fmt: skip
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self.fail(f"idp serve exited ({self.process.returncode})", self.log())
            try:
                if requests.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise self.fail(f"idp serve not healthy after {wait:.0f} s", self.log())

    def fetch_token(self, scope: str) -> str:
        # RFC 6749 §2.3.1: the credentials are form-encoded before the Basic encoding.
        auth = (quote(self.client_id, safe=""), quote(self.client_secret, safe=""))
        response = requests.post(
            f"{self.base}/oidc/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=auth,
            timeout=REQUEST_TIMEOUT,
        )
        if response.status_code != 200 or "access_token" not in response.text:
            raise self.fail(
                f"client_credentials token (scope {scope}): HTTP {response.status_code}",
                response.text + "\n" + self.log(),
            )
        return response.json()["access_token"]

    def create_user(self) -> None:
        """POST /users with a user:create token, then check one GET with a user:read token."""
        create = self.fetch_token("user:create")
        response = requests.post(
            f"{self.base}/users",
            json={"username": USERNAME, "password": PASSWORD},
            headers={"Authorization": f"Bearer {create}"},
            timeout=REQUEST_TIMEOUT,
        )
        if response.status_code not in (200, 201) or "userId" not in response.text:
            raise self.fail(
                f"POST /users: HTTP {response.status_code}", response.text + "\n" + self.log()
            )
        self.user_id = response.json()["userId"]
        self.token = self.fetch_token("user:read")
        response = requests.get(
            self.user_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=REQUEST_TIMEOUT,
        )
        if response.status_code != 200 or response.json().get("username") != USERNAME:
            raise self.fail(
                f"GET /users/{{id}} check: HTTP {response.status_code}",
                response.text + "\n" + self.log(),
            )

    @property
    def user_url(self) -> str:
        return f"{self.base}/users/{quote(self.user_id, safe='')}"

    def call(self, session: requests.Session) -> str | None:
        response = session.get(
            self.user_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=REQUEST_TIMEOUT,
        )
        return None if response.status_code == 200 else f"HTTP {response.status_code}"

    def cpu_seconds(self) -> tuple[float, frozenset[int]]:
        """User+system CPU seconds of the gunicorn master and its workers, and their pids.

        Read from Linux /proc; a changed pid set means a worker was replaced in between.
        """
        if self.process is None:
            return math.nan, frozenset()
        master = self.process.pid
        total, pids = 0, set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            # "pid (comm) state ppid ... utime stime ...": fields counted after the comm.
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(entry.name) == master or int(fields[1]) == master:
                total += int(fields[11]) + int(fields[12])
                pids.add(int(entry.name))
        return total / CLOCK_TICKS, frozenset(pids)

    def log(self, lines: int = LOG_TAIL) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, wait: bool = True) -> None:
        """SIGTERM to gunicorn; with ``wait=False`` the exit is awaited by wait_stopped()."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            self.stopping = process
        self.process = None
        if wait:
            self.wait_stopped()

    def wait_stopped(self) -> None:
        process, self.stopping = self.stopping, None
        if process is not None:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group we created for it
                process.wait(timeout=10)

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


# -- the report --------------------------------------------------------------------


@dataclass
class Round:
    """One measured phase of one build, with the CPU spent on each side."""

    result: PhaseResult
    server_cpu: float  # seconds, gunicorn master + workers (nan if a worker was replaced)
    client_cpu: float  # seconds, this process (all client threads)

    def metric(self, name: str) -> float:
        r = self.result
        if name == "rps":
            return r.rps
        if name in ("p50", "p99"):
            return r.p(float(name[1:]))
        cpu = self.server_cpu if name == "server_cpu" else self.client_cpu
        return cpu * 1000 / r.ok if r.ok else math.nan  # ms per successful request


@dataclass
class Series:
    """The measured rounds of one build."""

    rounds: list[Round] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(r.result.ok for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.result.error_count for r in self.rounds)

    def median(self, name: str) -> float:
        values = [v for r in self.rounds if not math.isnan(v := r.metric(name))]
        return statistics.median(values) if values else math.nan


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator and not math.isnan(denominator) else math.nan


def render(
    args: argparse.Namespace,
    builds: dict[str, Build],
    series: dict[str, Series],
    notes: list[str],
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> str:
    base, cur = series["baseline"], series["current"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    loadavg = " / ".join(" ".join(f"{x:.2f}" for x in la) for la in load)
    lines = [
        f"## GET /users/{{userId}}: current vs baseline {args.baseline_ref} — run of {now}",
        "",
        f"- date: {now}",
        f"- machine: nproc={os.cpu_count()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} {platform.machine()}; "
        f"load average (1/5/15 min) before / after: {loadavg}",
        f"- command: `{command_line()}`",
        f"- baseline: `{args.baseline_ref}` in {builds['baseline'].tree} "
        f"({builds['baseline'].describe()})",
        f"- current: {'`' + args.current_ref + '` in ' if args.current_ref else ''}"
        f"{builds['current'].tree} ({builds['current'].describe()})",
        f"- server: `python -m idp serve --workers {args.workers}` (gunicorn sync workers) "
        "per build, started afresh for every round and stopped after it (only the measured "
        "server runs), loopback; profile embedded (SQLite, no Redis; "
        "production not supported by bench/); fresh temp dir, keys, client and user per build",
        "- request: `GET /users/{userId}` with a `client_credentials` bearer token "
        "(client_secret_basic, scope `user:read`), the same token and user for every request",
        f"- load: {args.concurrency} client threads (one `requests.Session` each), "
        f"{args.rounds} round(s) per build, alternating (order flipped every round), "
        f"{args.warmup:g} s discarded warm-up + {args.duration:g} s measured per build per round",
        *(f"- note: {note}" for note in notes),
        "",
        "| build | ok | errors | req/s | p50 ms | p99 ms | server CPU ms/req | client CPU ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in ("baseline", "current"):
        s = series[label]
        lines.append(
            f"| {label} | {s.ok} | {s.errors} | {s.median('rps'):.1f} | {s.median('p50'):.1f} "
            f"| {s.median('p99'):.1f} | {s.median('server_cpu'):.2f} "
            f"| {s.median('client_cpu'):.2f} |"
        )
    lines += [
        "",
        "(medians over the rounds; CPU is user+system time per successful request, the server's "
        "from /proc for the gunicorn master and workers, the client's for this process)",
        "",
        "| round | baseline req/s | current req/s | req/s ratio "
        "| baseline server CPU ms/req | current server CPU ms/req |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    pairs = list(zip(base.rounds, cur.rounds, strict=True))
    for index, (b, c) in enumerate(pairs, start=1):
        lines.append(
            f"| {index} | {b.metric('rps'):.1f} | {c.metric('rps'):.1f} "
            f"| {_ratio(c.metric('rps'), b.metric('rps')):.3f} "
            f"| {b.metric('server_cpu'):.2f} | {c.metric('server_cpu'):.2f} |"
        )

    def row(title: str, name: str) -> str:
        per_round = [_ratio(c.metric(name), b.metric(name)) for b, c in pairs]
        per_round = [v for v in per_round if not math.isnan(v)]
        paired = statistics.median(per_round) if per_round else math.nan
        spread = f"{min(per_round):.3f} to {max(per_round):.3f}" if len(per_round) > 1 else "-"
        of_medians = _ratio(cur.median(name), base.median(name))
        return f"| {title} | **{paired:.3f}** | {of_medians:.3f} | {spread} |"

    lines += [
        "",
        "| current / baseline | median of per-round ratios | ratio of medians | per-round range |",
        "|---|---:|---:|---:|",
        row("throughput (req/s)", "rps"),
        row("p50 latency", "p50"),
        row("p99 latency", "p99"),
        row("server CPU per request", "server_cpu"),
    ]
    failed = {label: s for label, s in series.items() if s.errors}
    if failed:
        lines += ["", "Errors:"]
        for label, s in failed.items():
            merged = PhaseResult()
            for r in s.rounds:
                merged.merge(r.result)
            detail = ", ".join(f"{e} x{n}" for e, n in merged.errors.most_common())
            lines.append(f"- {label}: {detail}")
    return "\n".join(lines) + "\n"


def record(report: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    RESULTS.write_text(text.rstrip("\n") + "\n\n" + report)


# -- main --------------------------------------------------------------------------


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
    parser.add_argument(
        "--baseline-ref", default=DEFAULT_BASELINE, help=f"git ref (default {DEFAULT_BASELINE})"
    )
    parser.add_argument(
        "--current-ref", help="measure this ref instead of the working tree (harness check)"
    )
    parser.add_argument(
        "--rounds", type=int, default=6, help="measured rounds per build (default 6)"
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="measured seconds per round (default 5)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="discarded seconds before each (default 1)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--profile",
        choices=["embedded", "production"],
        default="embedded",
        help="embedded only (SQLite); bench/ has no PostgreSQL/Redis set-up",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument(
        "--record", action="store_true", help="append the report to bench/RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.profile == "production":
        parser.error(
            "--profile production is not supported: bench/ has no PostgreSQL+Redis set-up "
            "(bench/password_grant.py is SQLite-only); use the embedded profile"
        )
    for name in ("rounds", "concurrency", "workers"):
        if not 1 <= getattr(args, name) <= 64:
            parser.error(f"--{name} must be between 1 and 64")
    if not 0 < args.duration <= 120 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be in (0, 120] s and --warmup in [0, 60] s")
    return args


def measure(args: argparse.Namespace, servers: dict[str, BuildServer]) -> dict[str, Series]:
    series = {label: Series() for label in servers}
    for index in range(args.rounds):
        order = ("baseline", "current") if index % 2 == 0 else ("current", "baseline")
        for label in order:
            server = servers[label]
            server.start()  # fresh processes every round: no per-process bias carried over
            for other in servers.values():
                other.wait_stopped()  # nothing else of ours runs while measuring
            if args.warmup:
                run_phase(server.call, MAX_REQUESTS_PER_PHASE, args.concurrency, args.warmup)
            cpu_before, pids_before = server.cpu_seconds()
            client_before = time.process_time()
            result = run_phase(server.call, MAX_REQUESTS_PER_PHASE, args.concurrency, args.duration)
            client_cpu = time.process_time() - client_before
            cpu_after, pids_after = server.cpu_seconds()
            server.stop(wait=False)  # it exits while the next server starts
            server_cpu = cpu_after - cpu_before if pids_after == pids_before else math.nan
            measured = Round(result, server_cpu, client_cpu)
            series[label].rounds.append(measured)
            print(
                f"round {index + 1}/{args.rounds} {label}: {result.ok} ok, "
                f"{result.error_count} errors, {result.rps:.1f} req/s, "
                f"p50 {result.p(50):.1f} ms, p99 {result.p(99):.1f} ms, "
                f"server CPU {measured.metric('server_cpu'):.2f} ms/req",
                file=sys.stderr,
            )
    return series


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    notes = [
        "both builds run with the same interpreter and packages (.venv, installed for the "
        "current pyproject.toml); the client threads share the 2 cores with the servers",
    ]
    servers: dict[str, BuildServer] = {}
    try:
        baseline_tree = worktree_for(args.baseline_ref)
        current_tree = worktree_for(args.current_ref) if args.current_ref else REPO
        builds = {
            "baseline": Build("baseline", baseline_tree),
            "current": Build("current", current_tree),
        }
        pyprojects = (baseline_tree / "pyproject.toml", current_tree / "pyproject.toml")
        if not filecmp.cmp(*pyprojects, shallow=False):
            notes.append("pyproject.toml differs between the builds")
        if baseline_tree == current_tree:
            notes.append("baseline and current are the same tree: a harness check, expect ~1.0")
        load_before = os.getloadavg()
        for label, build in builds.items():
            server = servers[label] = BuildServer(build, args.workers)
            print(f"{label}: provisioning {build.tree} in {server.tmp} ...", file=sys.stderr)
            server.provision()
            server.start()
            server.create_user()
            server.stop()
            print(f"{label}: ready at {server.base} ({build.describe()})", file=sys.stderr)
        series = measure(args, servers)
        load_after = os.getloadavg()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for server in servers.values():
            server.cleanup()

    report = render(args, builds, series, notes, (load_before, load_after))
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    failed = any(s.errors for s in series.values())
    if args.record:
        if failed:
            print("not recorded in bench/RESULTS.md: some requests failed", file=sys.stderr)
        else:
            record(report)
            print(f"recorded in {os.path.relpath(RESULTS)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
