"""What py-spy's samples of one idp worker say: top functions and the largest costs.

py-spy (``record -f raw``) writes one line per distinct stack: frames from the thread's
root to the sampled function, ``;``-separated, then the sample count. Frames look like
``dispatch_request (flask/app.py:880)``: py-spy shortens the file name to its path below
the ``sys.path`` entry it came from, so its first part names the package.

Only threads running Python are sampled (idle ones are skipped), so the samples are the
worker's Python CPU time: granian's Rust side (HTTP parsing, its runtime) is not in them.
"""

from __future__ import annotations

import re
from pathlib import Path

# Which cost a sample belongs to, by the package of the function it was in (self time).
COST_OF_PACKAGE = {
    "idp": "idp's own code",
    "flask": "Flask and Werkzeug",
    "werkzeug": "Flask and Werkzeug",
    "authlib": "Authlib",
    "joserfc": "JOSE and crypto (joserfc, cryptography)",
    "cryptography": "JOSE and crypto (joserfc, cryptography)",
    "sqlalchemy": "database client (SQLAlchemy, psycopg)",
    "psycopg": "database client (SQLAlchemy, psycopg)",
    "psycopg_pool": "database client (SQLAlchemy, psycopg)",
    "redis": "Redis client (redis-py)",
    "prometheus_client": "metrics (prometheus_client)",
    "asyncio": "event loop and thread hand-off (asyncio, concurrent.futures, threading)",
    "concurrent": "event loop and thread hand-off (asyncio, concurrent.futures, threading)",
    "threading.py": "event loop and thread hand-off (asyncio, concurrent.futures, threading)",
    "queue.py": "event loop and thread hand-off (asyncio, concurrent.futures, threading)",
    "selectors.py": "event loop and thread hand-off (asyncio, concurrent.futures, threading)",
    "granian": "granian's Python side",
    "gunicorn": "gunicorn and gevent",
    "gevent": "gunicorn and gevent",
    "logging": "logging",
}
FRAME_FILE = re.compile(r"\(([^():]+)(?::\d+)?\)$")


def parse(folded: Path) -> tuple[int, list[tuple[list[str], int]]]:
    """(total samples, [(frames without line numbers, samples)])."""
    total, stacks = 0, []
    for line in folded.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit() or not stack:
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        stacks.append((frames, int(samples)))
        total += int(samples)
    return total, stacks


def cost_of(frame: str) -> str:
    found = FRAME_FILE.search(frame)
    path = found.group(1) if found else ""
    package = path.split("/", 1)[0]
    return COST_OF_PACKAGE.get(package, f"other: {package or frame}")


def top_functions(folded: Path, count: int = 12) -> list[str]:
    """idp's functions by inclusive share, then the functions samples were in."""
    total, stacks = parse(folded)
    if not total:
        return []
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for frames, n in stacks:
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def ranked(counts: dict[str, int], idp_only: bool) -> list[str]:
        kept = [(n, f) for f, n in counts.items() if not idp_only or "(idp/" in f]
        return [
            f"{100 * n / total:5.1f}% {frame}" for n, frame in sorted(kept, reverse=True)[:count]
        ]

    return [
        f"{total} samples; idp's functions, inclusive:",
        *ranked(inclusive, True),
        "self (the function the sample was in):",
        *ranked(own, False),
    ]


def largest_costs(
    folded: Path, sample_ms: float, tokens_per_worker: float, count: int = 5
) -> list[str]:
    """The ``count`` largest costs by package of the sampled function, in ms per token.

    ``sample_ms`` is py-spy's sampling interval and ``tokens_per_worker`` the tokens the
    sampled worker answered while it was sampled: samples * interval / tokens.
    """
    total, stacks = parse(folded)
    if not total or tokens_per_worker <= 0:
        return []
    costs: dict[str, int] = {}
    for frames, n in stacks:
        cost = cost_of(frames[-1])
        costs[cost] = costs.get(cost, 0) + n
    lines = [f"{'share':>6} {'ms/token':>8}  cost (self time of the sampled functions, by package)"]
    for n, cost in sorted(((n, c) for c, n in costs.items()), reverse=True)[:count]:
        lines.append(f"{100 * n / total:5.1f}% {n * sample_ms / tokens_per_worker:8.3f}  {cost}")
    lines.append(
        f"{'100.0%':>6} {total * sample_ms / tokens_per_worker:8.3f}  all Python samples "
        f"({total} at {sample_ms:g} ms, {tokens_per_worker:.0f} tokens by this worker)"
    )
    return lines
