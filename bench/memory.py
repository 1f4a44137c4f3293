"""A process group's memory under load: summed RSS and PSS, and the group leader's own RSS.

RSS counts shared pages (the interpreter, forked copy-on-write memory) once per process, so a
supervisor with two forked workers looks three times its size; PSS divides each shared page
among the processes that map it, so the group's PSS is what it really costs the machine. Both
are sampled every half second while a load runs and the peaks are kept (issue 15 item 2:
`make bench` reports the group's RSS and PSS; the supervisor stays under 25 MiB RSS).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from .common import group_pids

SAMPLE_INTERVAL = 0.5


@dataclass
class GroupMemory:
    rss_kib: int = 0  # peak of the group's summed VmRSS
    pss_kib: int = 0  # peak of the group's summed Pss (0 when smaps_rollup is unreadable)
    leader_rss_kib: int = 0  # peak VmRSS of the group leader (a supervisor, or the only process)
    processes: int = 0

    def describe(self) -> str:
        pss = f", PSS {self.pss_kib / 1024:.0f} MiB" if self.pss_kib else ""
        if self.processes <= 1:
            return f"RSS {self.rss_kib / 1024:.0f} MiB{pss}"
        return (f"group of {self.processes}: RSS {self.rss_kib / 1024:.0f} MiB{pss}; "
                f"leader {self.leader_rss_kib / 1024:.1f} MiB RSS")


def _field_kib(path: Path, name: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass  # the process ended between listing and reading: it no longer counts
    return 0


def sample(pgid: int) -> GroupMemory:
    """One reading of the group whose leader (and group id) is `pgid`."""
    pids = group_pids(pgid)
    rss = {pid: _field_kib(Path(f"/proc/{pid}/status"), "VmRSS") for pid in pids}
    pss = sum(_field_kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss") for pid in pids)
    return GroupMemory(sum(rss.values()), pss, rss.get(pgid, 0), len(pids))


@contextlib.asynccontextmanager
async def peak_memory(pgid: int) -> AsyncIterator[GroupMemory]:
    """Sample the group while the block runs; the yielded object holds the peaks afterwards."""
    peak = GroupMemory()

    async def sampler() -> None:
        while True:
            now = sample(pgid)
            peak.rss_kib = max(peak.rss_kib, now.rss_kib)
            peak.pss_kib = max(peak.pss_kib, now.pss_kib)
            peak.leader_rss_kib = max(peak.leader_rss_kib, now.leader_rss_kib)
            peak.processes = max(peak.processes, now.processes)
            await asyncio.sleep(SAMPLE_INTERVAL)

    task = asyncio.create_task(sampler())
    try:
        yield peak
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
