"""One measured run of token_bench.py (wrk against one server and scenario), the replay
checks, and the interleaved rounds."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import requests
from bench_assertions import AssertionPool
from bench_common import (
    LUA_SCRIPT,
    PASSWORD,
    PASSWORD_SCOPE,
    PY_SPY_RATE,
    REPLAY_DISTANCE,
    SCENARIO_LABELS,
    SCOPE,
    USERNAME,
    BenchError,
    log,
    machine_busy,
    run,
    worker_pids,
)
from bench_servers import Clients, IdpServer, Server
from profile_summary import largest_costs, top_functions

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
