"""The summary that heads token_bench.py's report: medians and per-round ratios.

Per scenario and connection count: each server's median tokens/s with its per-round
values, then every ratio as the median of the per-round ratios with those ratios in
brackets (``1.08`` TIMES ``[1.42, 0.82, 1.08]``: round 1, 2, 3), the p99 ratio of idp against
node, the errors and the replay checks. A ratio is only ever taken between two runs of
the same round, which were measured within a minute or two of each other.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

TIMES = "\N{MULTIPLICATION SIGN}"
# (numerator, denominator) of every tokens/s ratio the summary shows, when both ran.
RATIOS = (
    ("idp", "node"),
    ("idp", "node-cluster"),
    ("idp", "ceiling-replay"),
    ("idp", "ceiling"),
    ("idp-gunicorn", "node"),
    ("idp", "idp-gunicorn"),
    ("idp", "idp-granian-wsgi"),
    ("ceiling-replay", "ceiling"),  # what idp's replay check costs by itself
)


def per_round(rows: Iterable[Any], server: str, value: Callable[[Any], float]) -> dict[int, float]:
    return {row.round: value(row) for row in rows if row.server == server}


def ratio_text(over: dict[int, float], under: dict[int, float]) -> str:
    """``median`` TIMES ``[round 1, round 2, ...]`` over the rounds both servers ran, or ''."""
    values = [over[r] / under[r] for r in sorted(over) if under.get(r)]
    if not values:
        return ""
    rounds = ", ".join(f"{v:.2f}" for v in values)
    return f"{statistics.median(values):.2f}{TIMES} [{rounds}]"


def replay_text(replays: Iterable[Any], scenario: str, connections: int) -> str:
    found = [r for r in replays if r.scenario == scenario and r.connections == connections]
    if not found:
        return "none in this scenario (no assertion to replay)"
    failed = [f"{r.server} round {r.round}" for r in found if not r.passed]
    servers = ", ".join(sorted({r.server for r in found}))
    if failed:
        return f"FAIL in {', '.join(failed)} ({len(found) - len(failed)} of {len(found)} passed)"
    return f"all {len(found)} PASS ({servers}: early and late replay each got 401)"


def scenario_summary(
    label: str, connections: int, rows: list[Any], replays: list[Any], servers: list[str]
) -> list[str]:
    present = [name for name in servers if any(row.server == name for row in rows)]
    rounds = sorted({row.round for row in rows})
    lines = [
        f"### {label}, {connections} connections, {len(rounds)} round(s)",
        "",
        "| server | tokens/s, median | per round | p99 ms, median | errors |",
        "|---|---:|---|---:|---:|",
    ]
    for name in present:
        own = [row for row in rows if row.server == name]
        rates = [row.result.rate for row in sorted(own, key=lambda r: r.round)]
        p99 = statistics.median(row.result.p99 for row in own)
        errors = sum(row.result.errors for row in own)
        per = ", ".join(f"{rate:.0f}" for rate in rates)
        lines.append(f"| {name} | {statistics.median(rates):.0f} | {per} | {p99:.1f} | {errors} |")
    lines += ["", "| ratio (tokens/s) | median [per round] |", "|---|---|"]
    rate = lambda row: row.result.rate  # noqa: E731 -- a one-line accessor
    for over, under in RATIOS:
        text = ratio_text(per_round(rows, over, rate), per_round(rows, under, rate))
        if text:
            lines.append(f"| {over}/{under} | {text} |")
    p99 = lambda row: row.result.p99  # noqa: E731
    if text := ratio_text(per_round(rows, "idp", p99), per_round(rows, "node", p99)):
        lines.append(f"| p99 latency idp/node (below 1: idp answers faster) | {text} |")
    errors = sum(row.result.errors for row in rows)
    lines += [
        "",
        f"- errors, every server and round: {errors}"
        + (" (none)" if not errors else " (SEE THE TABLES BELOW)"),
        f"- replay checks: {replay_text(replays, rows[0].scenario, connections)}",
        "",
    ]
    return lines


def summary(
    rows: list[Any], replays: list[Any], servers: list[str], labels: dict[str, str]
) -> list[str]:
    """The summary of every scenario, in the order the rows were measured."""
    groups: dict[tuple[str, int], list[Any]] = {}
    for row in rows:
        groups.setdefault((row.scenario, row.connections), []).append(row)
    lines = [
        "tokens/s ratios above 1: the first server is faster; each ratio is the median of "
        "the per-round ratios, with round 1, 2, ... in brackets.",
        "",
    ]
    for (scenario, connections), group in groups.items():
        lines += scenario_summary(labels[scenario], connections, group, replays, servers)
    return lines
