"""A streamed upload and download through the proxy: MB/s and the proxy's peak RSS.

The upstream (bench/upstream.py) discards what it receives and generates what it sends; the
client is curl (streams from a sparse file, writes to /dev/null), or aiohttp without curl.
Peak RSS is the proxy's VmHWM from /proc/<pid>/status, reset before each transfer
(/proc/<pid>/clear_refs), minus its VmRSS just before: the memory the transfer cost.

Standalone (starts its own mock Entra ID, upstream and proxy):
    python -m bench.stream --size-mb 1024
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .common import BenchError, Procs, reset_peak_rss, rss_kib
from .servers import ProxyHandle, Stack

MB = 1_000_000  # MB/s are decimal; sizes below are MiB
PIECE = b"\0" * (1 << 20)


@dataclass(frozen=True)
class Transfer:
    direction: str  # "upload" | "download"
    via: str  # "proxy" | "direct"
    size: int
    seconds: float
    peak_growth_kib: int | None  # the proxy's VmHWM above its VmRSS before; None for direct
    peak_kib: int | None

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / self.seconds if self.seconds else 0.0


def _curl(argv: list[str]) -> tuple[int, int, float]:
    """(http code, bytes moved, seconds) of one curl transfer."""
    fmt = "%{http_code} %{size_upload} %{size_download} %{time_total}"
    done = subprocess.run(["curl", "-sS", "--max-time", "600", "-w", fmt, *argv],
                          capture_output=True, text=True, timeout=660)
    if done.returncode != 0:
        raise BenchError(f"curl failed: {done.stderr.strip()[:200]}")
    code, up, down, total = done.stdout.strip().split()[-4:]
    return int(code), max(int(float(up)), int(float(down))), float(total)


async def _transfer_curl(direction: str, url: str, cookie: str, size: int,
                         sparse: Path, reply: Path) -> float:
    headers = ["-H", f"Cookie: {cookie}"] if cookie else []
    if direction == "upload":
        argv = [*headers, "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                "-T", str(sparse), "-o", str(reply), url + "/upload"]
    else:
        argv = [*headers, "-o", "/dev/null", f"{url}/download/{size}"]
    code, moved, seconds = await asyncio.to_thread(_curl, argv)
    if code != 200 or moved != size:
        raise BenchError(f"{direction} via {url}: HTTP {code}, {moved} of {size} bytes")
    if direction == "upload":
        received = json.loads(reply.read_text())["received"]
        if received != size:
            raise BenchError(f"upstream received {received} of {size} bytes")
    return seconds


async def _body(size: int) -> AsyncIterator[bytes]:
    left = size
    while left > 0:
        n = min(left, len(PIECE))
        yield PIECE[:n]
        left -= n


async def _transfer_aiohttp(direction: str, url: str, cookie: str, size: int) -> float:
    headers = {"Cookie": cookie} if cookie else {}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        start = time.perf_counter()
        if direction == "upload":
            headers["Content-Length"] = str(size)
            async with client.put(url + "/upload", data=_body(size), headers=headers) as resp:
                received = (await resp.json())["received"]
            if resp.status != 200 or received != size:
                raise BenchError(f"upload via {url}: HTTP {resp.status}, {received} bytes")
        else:
            moved = 0
            async with client.get(f"{url}/download/{size}", headers=headers) as resp:
                async for chunk in resp.content.iter_any():
                    moved += len(chunk)
            if resp.status != 200 or moved != size:
                raise BenchError(f"download via {url}: HTTP {resp.status}, {moved} bytes")
        return time.perf_counter() - start


async def transfer(direction: str, url: str, cookie: str, size: int, workdir: Path,
                   pid: int | None) -> Transfer:
    sparse = workdir / "upload.bin"
    if not sparse.exists() or sparse.stat().st_size != size:
        with sparse.open("wb") as f:
            f.truncate(size)  # sparse: reading it costs no disk
        with sparse.open("rb") as f:  # the first read of a hole fills the page cache with
            while f.read(8 << 20):  # zero pages; do it now, not during the first upload
                pass
    before = rss_kib(pid) if pid else 0
    if pid:
        reset_peak_rss(pid)
    if shutil.which("curl"):
        seconds = await _transfer_curl(direction, url, cookie, size, sparse,
                                       workdir / "upload-reply.json")
    else:
        seconds = await _transfer_aiohttp(direction, url, cookie, size)
    peak = rss_kib(pid, "VmHWM") if pid else None
    return Transfer(direction, "proxy" if pid else "direct", size, seconds,
                    None if peak is None else peak - before, peak)


async def measure(proxy: ProxyHandle, upstream: str, size: int, workdir: Path) -> list[Transfer]:
    """Upload then download `size` bytes directly (the reference) and through the proxy."""
    await transfer("download", proxy.url, proxy.cookie, 1 << 20, workdir, None)  # warm
    out = []
    for direction in ("upload", "download"):
        out.append(await transfer(direction, upstream, "", size, workdir, None))
        out.append(await transfer(direction, proxy.url, proxy.cookie, size, workdir,
                                  proxy.proc.pid))
    return out


async def standalone(size: int) -> list[Transfer]:
    procs = Procs(Path(tempfile.mkdtemp(prefix="aap-bench-stream-")))
    try:
        stack = Stack(procs)
        await stack.start_mock()
        _, upstream = await stack.start_python_upstream()
        proxy = await stack.start_proxy("proxy-stream", upstream=upstream)
        return await measure(proxy, upstream, size, procs.workdir)
    finally:
        procs.stop_all()
        shutil.rmtree(procs.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="MiB each way")
    args = parser.parse_args()
    for t in asyncio.run(standalone(args.size_mb << 20)):
        growth = ""
        if t.peak_growth_kib is not None and t.peak_kib is not None:
            growth = (f"  proxy peak RSS +{t.peak_growth_kib / 1024:.1f} MiB "
                      f"({t.peak_kib / 1024:.1f} MiB)")
        print(f"{t.direction:8} {t.via:6} {t.size >> 20} MiB  {t.mb_per_s:8.1f} MB/s{growth}")


if __name__ == "__main__":
    main()
