"""The same upstream faults against an in-process proxy, to count asyncio tasks (which a
process's /proc entry cannot show): after every fault has played out, the event loop holds
no more tasks than it did before."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.web_protocol import RequestHandler

from tests.conftest import Stack, StackFactory
from tests.faults.conftest import WsUpstream
from tests.faults.support import BrokenUpstream

ROUNDS = 5


def served_port(task: asyncio.Task[Any]) -> int | None:
    """For an aiohttp server connection's task, the local port of that connection."""
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    handler = frame.f_locals.get("self") if frame is not None else None
    transport = getattr(handler, "transport", None)
    if not isinstance(handler, RequestHandler) or transport is None:
        return None
    sockname = transport.get_extra_info("sockname")
    return int(sockname[1]) if sockname else None


def describe(tasks: set[asyncio.Task[Any]]) -> str:
    return "\n".join(sorted(f"{task!r} port={served_port(task)}" for task in tasks))


def others() -> set[asyncio.Task[Any]]:
    me = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not me}


async def tasks_settle(baseline: set[asyncio.Task[Any]], proxy_port: int,
                       timeout: float = 15.0) -> tuple[int, set[asyncio.Task[Any]]]:
    """Wait until the loop holds no more tasks than `baseline` and none of the new ones is
    the proxy's (a connection of its server, or anything that is not an upstream server's
    idle keep-alive connection). Returns the task count and the new tasks at that point."""
    deadline = time.monotonic() + timeout
    while True:
        now = others()
        new = now - baseline
        suspicious = {t for t in new if served_port(t) in (None, proxy_port)}
        if (len(now) <= len(baseline) and not suspicious) or time.monotonic() > deadline:
            return len(now), new
        await asyncio.sleep(0.1)


async def swallow(coro: Any) -> None:
    try:
        await coro
    except (aiohttp.ClientError, TimeoutError):
        pass


async def exercise(stack: Stack, client: aiohttp.ClientSession) -> None:
    """Every upstream fault once: each leaves the proxy answering normally afterwards."""
    url = stack.url
    for path, expected in (("/refused/x", 502), ("/broken/early-rst", 502), ("/slow?s=2", 504)):
        async with client.get(url + path) as resp:
            assert resp.status == expected, path
            await resp.read()
    for kind in ("cl-rst", "cl-fin", "chunked-rst", "chunked-fin", "cl-stall"):
        prefix = "/stalled/" if kind.endswith("stall") else "/broken/"
        async with client.get(url + prefix + kind) as resp:
            assert resp.status == 200
            with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
                await resp.read()
    resp = await client.get(url + f"/download/{1 << 30}")
    await resp.content.readexactly(1 << 20)
    resp.close()  # the client vanishes mid-download
    ws_url = url.replace("http", "ws") + "/wsfault"
    async with client.ws_connect(ws_url + "/ws-abort") as ws:
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=5) == "echo:hi"
        await ws.receive(timeout=5)  # the close the proxy passes on
    other = aiohttp.ClientSession(cookie_jar=client.cookie_jar)
    ws = await other.ws_connect(ws_url + "/ws-echo")
    await ws.send_str("x")
    assert await ws.receive_str(timeout=5) == "echo:x"
    await other.close()  # the client's socket goes without a close frame
    await ws.close()  # only releases the (already closed) connection object
    async with client.get(url + "/after") as resp:
        assert resp.status == 200


async def test_upstream_faults_leave_no_tasks_behind(
        make_stack: StackFactory, fault_routes: dict[str, Any],
        broken_upstream: BrokenUpstream, ws_upstream: WsUpstream) -> None:
    stack = await make_stack(fault_routes)
    # A client that keeps no connections: each request's server-side handler task ends with it.
    client = aiohttp.ClientSession(cookie_jar=stack.client.cookie_jar,
                                   connector=aiohttp.TCPConnector(force_close=True))
    async with client:
        await stack.login()
        async with client.get(stack.url + "/warm") as resp:
            assert resp.status == 200
        await asyncio.sleep(0.2)
        baseline = others()
        for _ in range(ROUNDS):
            await exercise(stack, client)
        count, new = await tasks_settle(baseline, int(stack.url.rsplit(":", 1)[1]))
    # The proxy's pooled connections to the echo upstream are served by tasks of the (in
    # process) upstream: one may have replaced another, but there are no more of them.
    assert count <= len(baseline), (
        f"{count} tasks after the faults, {len(baseline)} before; new ones:\n{describe(new)}")
    assert all(served_port(t) not in (None, int(stack.url.rsplit(":", 1)[1])) for t in new), \
        describe(new)
    assert broken_upstream.open == 0
    assert ws_upstream.finished.count("echo") == ROUNDS
