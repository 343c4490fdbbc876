"""Start-up time of ``idp`` commands against a bare interpreter, as a Markdown table.

Each command runs ``--runs`` times in a fresh process (``python -m idp …``) on an
initialised embedded install in a temporary folder (SQLite, file key store); the table
shows the median wall-clock and CPU time and the ratio to ``python -c pass`` and to the
import of the libraries every command needs (Flask, SQLAlchemy's ORM, joserfc). It then
lists which of the heavy modules a command should not need (Alembic, Flask-Migrate,
Authlib, redis-py, requests) ``idp keys list`` imported, from ``python -X importtime``.

    .venv/bin/python bench/cli_startup.py             # 9 runs of each command
    .venv/bin/python bench/cli_startup.py --runs 21
    .venv/bin/python bench/cli_startup.py --checkout /tmp/idp-old   # another tree's idp

With ``--checkout DIR`` the commands import the ``idp`` package of DIR (a ``git
worktree`` of an older commit, say) through PYTHONPATH, to compare two versions on the
same machine in the same minute.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = "import flask, flask.cli, flask_sqlalchemy, sqlalchemy.orm, joserfc.jwk, click"
COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("import of the libraries idp needs", ["-c", FLOOR]),
    ("idp --help", ["-m", "idp", "--help"]),
    ("idp keys list", ["-m", "idp", "keys", "list"]),
    ("idp tenants list", ["-m", "idp", "tenants", "list"]),
    ("idp clients list", ["-m", "idp", "clients", "list"]),
    ("idp audit list", ["-m", "idp", "audit", "list"]),
    ("idp purge --dry-run", ["-m", "idp", "purge", "--dry-run"]),
]
# Modules a command that only reads the key store or the database should not import.
HEAVY = ("alembic", "flask_migrate", "authlib", "redis", "requests")


class CommandFailed(Exception):
    """The command exited non-zero (an older checkout may not have it)."""


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], env=env, cwd=cwd, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise CommandFailed(done.stderr.decode().strip().splitlines()[-1:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def heavy_imports(env: dict[str, str], cwd: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "idp", "keys", "list"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    return sorted({name.split(".")[0] for name in modules} & set(HEAVY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per command (median kept)")
    parser.add_argument("--checkout", type=Path, help="import idp from this source tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="idp-cli-bench-") as folder:
        cwd = Path(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        env |= {
            "IDP_DATABASE_URL": f"sqlite:///{cwd / 'idp.sqlite3'}",
            "IDP_KEYS_DIR": str(cwd / "keys"),
        }
        if args.checkout:
            env["PYTHONPATH"] = str(args.checkout.resolve())
        run_once(["-m", "idp", "init"], env, cwd)
        rows: list[tuple[str, float, float]] = []
        for label, argv in COMMANDS:
            try:
                for _ in range(2):  # warm the file cache
                    run_once(argv, env, cwd)
                samples = [run_once(argv, env, cwd) for _ in range(args.runs)]
            except CommandFailed as failed:
                print(f"skipped `{label}`: {failed}", file=sys.stderr)
                continue
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            rows.append((label, wall, cpu))
        base, floor = rows[0][1], rows[1][1]
        print(
            f"`idp` start-up, median of {args.runs} runs, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}\n"
        )
        print("| command | wall s | CPU s | x `python -c pass` | x library import |")
        print("|---|---:|---:|---:|---:|")
        for label, wall, cpu in rows:
            print(
                f"| `{label}` | {wall:.3f} | {cpu:.3f} | {wall / base:.1f} | {wall / floor:.2f} |"
            )
        heavy = heavy_imports(env, cwd)
        print(f"\nheavy modules imported by `idp keys list`: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
