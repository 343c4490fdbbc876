"""Memory of a server's process tree, read from /proc (Linux).

Two sums over the processes of one server (main process and workers, without the
storage servers it talks to):

* RSS: ``VmRSS`` of /proc/<pid>/status. Pages that forked workers share with their
  parent count once per process, so a pre-forking server looks larger than it is.
* PSS: ``Pss`` of /proc/<pid>/smaps_rollup. A shared page counts for 1/n in each of the
  n processes that map it, so the sum is what the server really holds in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TreeMemory:
    processes: int
    rss_kib: int
    pss_kib: int | None  # None when smaps_rollup is unreadable (another user's process)

    def describe(self) -> str:
        pss = "-" if self.pss_kib is None else f"{self.pss_kib / 1024:.0f}"
        return f"{self.processes} | {self.rss_kib / 1024:.0f} | {pss}"


def _field_kib(path: Path, name: str) -> int | None:
    """The value in kB of the line ``name: <value> kB`` of a /proc file."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return None


def tree_memory(pids: frozenset[int]) -> TreeMemory:
    """RSS and PSS summed over ``pids`` (processes that exited meanwhile are skipped)."""
    rss_total, pss_total, counted, pss_known = 0, 0, 0, True
    for pid in sorted(pids):
        rss = _field_kib(Path(f"/proc/{pid}/status"), "VmRSS")
        if rss is None:
            continue  # exited, or a kernel thread without memory of its own
        counted += 1
        rss_total += rss
        pss = _field_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
        if pss is None:
            pss_known = False
        else:
            pss_total += pss
    return TreeMemory(counted, rss_total, pss_total if pss_known else None)
