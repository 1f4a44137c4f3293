"""Load generation: wrk (with a Lua `done` hook printing exact p50/p99 as JSON), or a small
aiohttp fallback when wrk is not installed (smoke runs only; its numbers are labelled)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .common import BenchError, which

# wrk calls done() once with the merged statistics of all its threads.
WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"max_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.max))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int  # connect/read/write errors: mostly the server closing keep-alives
    bad_answers: int  # non-2xx/3xx answers and timeouts
    tool: str

    @property
    def errors(self) -> int:
        return self.socket_errors + self.bad_answers

    @property
    def errors_text(self) -> str:
        parts = [f"{self.socket_errors} sock" if self.socket_errors else "",
                 f"{self.bad_answers} bad" if self.bad_answers else ""]
        return ", ".join(p for p in parts if p) or "0"

    def suspicious(self) -> bool:
        """Wrong answers beyond 0.1%, or so many reconnects that they shape the figure."""
        return (self.bad_answers > self.requests // 1000
                or self.socket_errors > self.requests // 20)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    """wrk on PATH, unless BENCH_NO_WRK=1 asks for the fallback (to test it)."""
    return which("wrk") is not None and os.environ.get("BENCH_NO_WRK", "") != "1"


def run_wrk(url: str, headers: Mapping[str, str], *, connections: int, seconds: float,
            threads: int, workdir: Path) -> LoadResult:
    wrk = which("wrk")
    if wrk is None or not wrk_available():
        raise BenchError("wrk is not installed")
    script = workdir / "report.lua"
    if not script.exists():
        script.write_text(WRK_LUA)
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--timeout", "5s", "-s", str(script)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:300]}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return LoadResult(requests=int(data["requests"]), seconds=data["duration_us"] / 1e6,
                      p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
                      socket_errors=sum(int(data[k]) for k in ("connect", "read", "write")),
                      bad_answers=int(data["status"]) + int(data["timeout"]), tool="wrk")


async def run_python(url: str, headers: Mapping[str, str], *, connections: int,
                     seconds: float) -> LoadResult:
    """Closed-loop load like wrk's: `connections` keep-alive clients, each one request at a
    time, for `seconds`. Far slower than wrk: only for smoke runs where wrk is missing."""
    latencies: list[float] = []
    errors = bad = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def one_client() -> None:
            nonlocal errors, bad
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with client.get(url, headers=dict(headers),
                                          allow_redirects=False) as resp:
                        await resp.read()
                        if resp.status >= 400:
                            bad += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(one_client() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return LoadResult(requests=len(latencies), seconds=elapsed, p50_ms=pct(50), p99_ms=pct(99),
                      socket_errors=errors, bad_answers=bad, tool="python")


async def run_load(url: str, headers: Mapping[str, str], *, connections: int, seconds: float,
                   threads: int, workdir: Path) -> LoadResult:
    if wrk_available():
        return await asyncio.to_thread(run_wrk, url, headers, connections=connections,
                                       seconds=seconds, threads=threads, workdir=workdir)
    return await run_python(url, headers, connections=connections, seconds=seconds)
