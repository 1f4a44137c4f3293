"""Many concurrent idle WebSockets through the proxy: what they cost in proxy RSS.

Each socket is opened with the session cookie, proves it reaches the upstream with one echo,
then stays idle. The figure is the proxy's VmRSS with all of them open (after a settle
pause) minus its VmRSS before, with one socket already opened and closed to warm up.

Standalone (starts its own mock Entra ID, upstream and proxy):
    python -m bench.ws_idle --count 1000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .common import BenchError, Procs, rss_kib
from .servers import ProxyHandle, Stack


@dataclass(frozen=True)
class WsResult:
    count: int
    idle_kib: int  # proxy VmRSS before
    open_kib: int  # proxy VmRSS with `count` idle sockets

    @property
    def growth_mib(self) -> float:
        return (self.open_kib - self.idle_kib) / 1024

    @property
    def per_socket_kib(self) -> float:
        return (self.open_kib - self.idle_kib) / self.count if self.count else 0.0


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = hard if hard == resource.RLIM_INFINITY else min(hard, max(need, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _open(client: aiohttp.ClientSession, url: str,
                cookie: str) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect(url, headers={"Cookie": cookie}, heartbeat=None,
                                 autoclose=True, autoping=True)
    await ws.send_str("ping")
    if await ws.receive_str(timeout=30) != "ping":
        raise BenchError("WebSocket echo did not come back")
    return ws


async def measure(proxy: ProxyHandle, count: int, settle: float = 3.0) -> WsResult:
    raise_fd_limit(count * 2 + 256)
    url = proxy.url.replace("http://", "ws://") + "/ws"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        warm = await _open(client, url, proxy.cookie)
        await warm.close()
        await asyncio.sleep(min(1.0, settle))
        idle = rss_kib(proxy.proc.pid)
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        try:
            for start in range(0, count, 100):  # batches: no accept-queue overflow
                batch = min(100, count - start)
                sockets += await asyncio.gather(
                    *(_open(client, url, proxy.cookie) for _ in range(batch)))
            await asyncio.sleep(settle)
            if not proxy.proc.alive():
                raise BenchError("the proxy exited while holding WebSockets")
            open_kib = rss_kib(proxy.proc.pid)
            if sum(1 for ws in sockets if not ws.closed) != count:
                raise BenchError("some WebSockets closed while idle")
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return WsResult(count, idle, open_kib)


async def standalone(count: int) -> WsResult:
    procs = Procs(Path(tempfile.mkdtemp(prefix="aap-bench-ws-")))
    try:
        stack = Stack(procs)
        await stack.start_mock()
        _, upstream = await stack.start_python_upstream()
        proxy = await stack.start_proxy("proxy-ws", upstream=upstream)
        return await measure(proxy, count)
    finally:
        procs.stop_all()
        shutil.rmtree(procs.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    r = asyncio.run(standalone(args.count))
    print(f"{r.count} idle WebSockets: proxy RSS {r.idle_kib / 1024:.1f} -> "
          f"{r.open_kib / 1024:.1f} MiB (+{r.growth_mib:.1f} MiB, "
          f"{r.per_socket_kib:.1f} KiB each)")


if __name__ == "__main__":
    main()
