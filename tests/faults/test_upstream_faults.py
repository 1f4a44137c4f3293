"""Upstream faults against a proxy process: refused, reset before or during the body, slow,
stalled mid-body, a client that vanishes, WebSockets that die. Each answer is honest (502,
504, or a cut connection, never a fake-complete body), the proxy stays healthy, and its
open file descriptors come back to where they were."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import HTML
from tests.faults.conftest import ProcessFactory, WsUpstream
from tests.faults.support import DECLARED, PARTIAL, BrokenUpstream, ProxyProcess, fd_targets, settle

ROUNDS = 10
FD_TOLERANCE = 3  # a pooled keep-alive connection or two may come and go


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture
async def signed_in(proxy_processes: ProcessFactory,
                    fault_routes: dict[str, Any]) -> AsyncIterator[tuple[ProxyProcess,
                                                                         aiohttp.ClientSession]]:
    proxy = await proxy_processes(fault_routes)
    async with browser() as client:
        async with client.get(proxy.url + "/warm", headers=HTML) as resp:
            assert resp.status == 200  # signed in through the mock, then the echo upstream
        yield proxy, client


async def ok(client: aiohttp.ClientSession, proxy: ProxyProcess) -> None:
    async with client.get(proxy.url + "/after") as resp:
        assert resp.status == 200
        assert (await resp.json())["path"] == "/after"


async def assert_fds_back(proxy: ProxyProcess, baseline: int) -> None:
    now = await settle(proxy.fds, baseline, FD_TOLERANCE)
    assert now <= baseline + FD_TOLERANCE, (
        f"proxy holds {now} fds, {baseline} before the faults:\n{fd_targets(proxy.pid)}")


async def read_truncated(resp: aiohttp.ClientResponse) -> int:
    """Read until the body breaks; fail if it ends as though it were complete."""
    received = 0
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
        async for chunk in resp.content.iter_any():
            received += len(chunk)
    return received


@pytest.mark.parametrize("kind", ["cl-rst", "cl-fin", "chunked-rst", "chunked-fin"])
async def test_upstream_breaking_off_mid_body_cuts_the_client_connection(
        signed_in: tuple[ProxyProcess, aiohttp.ClientSession], broken_upstream: BrokenUpstream,
        kind: str) -> None:
    proxy, client = signed_in
    await ok(client, proxy)
    baseline = proxy.fds()
    for _ in range(ROUNDS):
        async with client.get(f"{proxy.url}/broken/{kind}") as resp:
            assert resp.status == 200  # the upstream's headers were already passed on
            if kind.startswith("cl"):
                assert resp.headers["Content-Length"] == str(DECLARED)
            else:
                assert "Content-Length" not in resp.headers
            received = await read_truncated(resp)
        assert received <= len(PARTIAL)
    assert broken_upstream.connections == ROUNDS
    await ok(client, proxy)
    await assert_fds_back(proxy, baseline)
    assert broken_upstream.open == 0


@pytest.mark.parametrize(("path", "status"), [
    ("/broken/small-rst", 502), ("/broken/small-fin", 502), ("/stalled/small-stall", 504)])
async def test_short_body_breaking_off_before_the_proxy_answers_is_an_error_page(
        signed_in: tuple[ProxyProcess, aiohttp.ClientSession], path: str, status: int) -> None:
    # A short body may be read whole before the proxy answers (proxy/upstream.py SMALL_BODY):
    # when it breaks off, nothing has been sent yet, so the answer can still be an honest
    # 502 (504 when it stalls past the route timeout), never a 500 or a fake 200.
    proxy, client = signed_in
    await ok(client, proxy)
    baseline = proxy.fds()
    for _ in range(ROUNDS // 2):
        async with client.get(proxy.url + path) as resp:
            body = await resp.read()
            assert resp.status == status, (resp.status, body[:300])
            assert json.loads(body)["request_id"] == resp.headers["X-Request-Id"]
    await ok(client, proxy)
    await assert_fds_back(proxy, baseline)


async def test_refused_and_reset_before_headers_are_502_with_a_request_id(
        signed_in: tuple[ProxyProcess, aiohttp.ClientSession]) -> None:
    proxy, client = signed_in
    await ok(client, proxy)
    baseline = proxy.fds()
    for _ in range(ROUNDS):
        for path in ("/refused/x", "/broken/early-rst"):
            async with client.get(proxy.url + path) as resp:
                assert resp.status == 502, path
                body = await resp.json()
                assert body["request_id"] == resp.headers["X-Request-Id"]
                assert "unreachable" in body["message"]
    await ok(client, proxy)
    await assert_fds_back(proxy, baseline)


async def test_slow_upstream_is_504_page_with_request_id(
        signed_in: tuple[ProxyProcess, aiohttp.ClientSession]) -> None:
    proxy, client = signed_in
    await ok(client, proxy)
    baseline = proxy.fds()
    started = time.monotonic()
    async with client.get(proxy.url + "/slow?s=4", headers=HTML) as resp:
        page = await resp.text()
    elapsed = time.monotonic() - started
    assert resp.status == 504
    assert 0.9 < elapsed < 3.5, elapsed  # timeout = "1s", not the upstream's 4 s
    rid = resp.headers["X-Request-Id"]
    assert re.search(rf"Request ID: {re.escape(rid)}\b", page), page
    assert "did not answer in time" in page
    # Concurrent slow requests each get their own 504 and nothing is left behind (their
    # client's keep-alive connections are closed with it: those are not the proxy's).
    async with aiohttp.ClientSession(cookie_jar=client.cookie_jar) as burst:
        statuses = await asyncio.gather(*[status(burst, proxy.url + "/slow?s=3")
                                          for _ in range(ROUNDS)])
    assert statuses == [504] * ROUNDS
    await ok(client, proxy)
    await assert_fds_back(proxy, baseline)


async def status(client: aiohttp.ClientSession, url: str) -> int:
    async with client.get(url) as resp:
        await resp.read()
        return resp.status


async def test_upstream_stalling_mid_body_is_cut_after_the_route_timeout(
        signed_in: tuple[ProxyProcess, aiohttp.ClientSession],
        broken_upstream: BrokenUpstream) -> None:
    proxy, client = signed_in
    await ok(client, proxy)
    baseline = proxy.fds()
    started = time.monotonic()
    async with client.get(proxy.url + "/stalled/cl-stall") as resp:
        assert resp.status == 200 and resp.headers["Content-Length"] == str(DECLARED)
        received = await read_truncated(resp)
    elapsed = time.monotonic() - started
    assert received <= len(PARTIAL)
    assert elapsed < 5, f"a stalled body held the client for {elapsed:.1f}s (timeout 1s)"
    await ok(client, proxy)
    await assert_fds_back(proxy, baseline)
    for _ in range(50):  # the proxy hung up on the stalled upstream too
        if broken_upstream.open == 0:
            break
        await asyncio.sleep(0.1)
    assert broken_upstream.open == 0


async def test_client_vanishing_mid_transfer_releases_both_sides(
        signed_in: tuple[ProxyProcess, aiohttp.ClientSession]) -> None:
    proxy, client = signed_in
    await ok(client, proxy)
    baseline = proxy.fds()
    for _ in range(ROUNDS // 2):
        # A download abandoned after 1 MB of 1 GB.
        resp = await client.get(proxy.url + f"/download/{1 << 30}")
        assert resp.status == 200
        await resp.content.readexactly(1 << 20)
        resp.close()  # drops the connection
        # An upload abandoned halfway: the client's connection is gone mid-body.
        async with aiohttp.ClientSession(cookie_jar=client.cookie_jar) as uploader:
            task = asyncio.ensure_future(uploader.post(proxy.url + "/upload",
                                                       data=endless_body()))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    await ok(client, proxy)
    await assert_fds_back(proxy, baseline)


async def endless_body() -> AsyncIterator[bytes]:
    piece = b"u" * 65536
    while True:
        yield piece
        await asyncio.sleep(0.001)


async def test_websocket_faults_close_the_other_side(
        signed_in: tuple[ProxyProcess, aiohttp.ClientSession], ws_upstream: WsUpstream) -> None:
    proxy, client = signed_in
    ws_url = proxy.url.replace("http", "ws") + "/wsfault"
    await ok(client, proxy)
    baseline = proxy.fds()
    for _ in range(ROUNDS // 2):
        # The upstream drops the TCP connection: the client is told, not left hanging.
        async with client.ws_connect(ws_url + "/ws-abort") as ws:
            await ws.send_str("hi")
            assert await ws.receive_str(timeout=5) == "echo:hi"
            message = await ws.receive(timeout=5)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.ERROR), message
        # The client vanishes without a close frame: the upstream's socket is closed.
        before = ws_upstream.finished.count("echo")
        other = aiohttp.ClientSession(cookie_jar=client.cookie_jar)
        ws = await other.ws_connect(ws_url + "/ws-echo")
        await ws.send_str("x")
        assert await ws.receive_str(timeout=5) == "echo:x"
        await other.close()  # closes the socket under the open WebSocket: no close frame
        assert not ws.closed
        await ws.close()  # only releases the (already closed) connection object
        for _ in range(50):
            if ws_upstream.finished.count("echo") > before:
                break
            await asyncio.sleep(0.1)
        assert ws_upstream.finished.count("echo") == before + 1
    await ok(client, proxy)
    await assert_fds_back(proxy, baseline)
