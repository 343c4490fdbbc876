"""What every part of token_bench.py shares: paths, constants, and small helpers for
processes, /proc and git."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench_servers import Server

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
