"""Odd upstream answers, end to end through the proxy, against aiohttp's client parser.

Every answer of the corpus comes from a raw loopback upstream; the proxy's decision (502,
or a cut body: refuse; anything else: accept) must be the one aiohttp's client parser
makes in its strict mode, and the proxy must refuse everything aiohttp's lenient mode (the
client the proxy used before) refuses. Also end to end: the rule for non-UTF-8 header
bytes, a client dripping its upload, and the per-origin connection cap."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Stack, StackFactory, port_of

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"

CORPUS: dict[str, bytes] = {
    "plain": OK,
    "no-reason": b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
    "no-reason-space": b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok",
    "folded-header": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
    "folded-tab": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\tfolded\r\nContent-Length: 2\r\n\r\nok",
    "cl-duplicate-same": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "cl-conflicting": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "cl-list": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    "cl-negative": b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
    "cl-plus": b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
    "cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"2\r\nok\r\n0\r\n\r\n",
    "te-and-cl": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                 b"2\r\nok\r\n0\r\n\r\n",
    "chunked": CHUNKED,
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n"
                      b"0\r\n\r\n",
    "bare-lf-lines": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "bare-lf-one-header": b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok",
    "bare-cr-in-value": b"HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\nContent-Length: 2\r\n\r\nok",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "100-continue-first": b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
    "103-early-hints-first": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK,
    "two-1xx-first": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" + OK,
    "trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
                b"2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
    "bytes-after-body": OK + b"garbage after the body\r\n",
    "answer-after-answer": OK + OK,
    "body-until-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok until close",
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok",
    "large-head-fine": b"HTTP/1.1 200 OK\r\n" + b"X-A: " + b"a" * 4000 + b"\r\n"
                       + b"X-B: 1\r\n" * 100 + b"Content-Length: 2\r\n\r\nok",
    "huge-header-value": b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 100_000 + b"\r\n"
                         b"Content-Length: 2\r\n\r\nok",
    "huge-header-count": b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 300
                         + b"Content-Length: 2\r\n\r\nok",
    "huge-reason": b"HTTP/1.1 200 " + b"r" * 20_000 + b"\r\nContent-Length: 2\r\n\r\nok",
    "http-2-version": b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "garbage": b"garbage\r\n\r\n",
    "empty": b"",
}


class RawUpstream:
    """GET /case/<name> is answered with CORPUS[name], byte for byte, then closed;
    /hold/<n> is read and never answered (until the client goes away)."""

    def __init__(self) -> None:
        self.port = 0
        self.open = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            path = head.split(b" ", 2)[1].decode()
            if path.startswith("/case/"):
                writer.write(CORPUS[path.removeprefix("/case/")])
                await writer.drain()
                await asyncio.sleep(0.05)
            else:
                while await reader.read(65536):
                    pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream()
    await upstream.start()
    yield upstream
    await upstream.close()


async def through(make_stack: StackFactory, upstream: RawUpstream, **route: Any) -> Stack:
    """A proxy whose one route (public, so no sign-in) goes to the raw upstream."""
    return await make_stack({"upstreams": [
        {"path": "/", "url": upstream.url, "public": ["^/"], "timeout": "3s", **route}]})


async def proxy_decision(client: aiohttp.ClientSession, url: str) -> str:
    try:
        async with client.get(url) as resp:
            await resp.read()
            return "refuse" if resp.status == 502 else "accept"
    except aiohttp.ClientError:  # headers passed on, then the body cut: refused too
        return "refuse"


async def reference(urls: list[str], strict: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONASYNCIODEBUG"}
    if strict:
        env["PYTHONASYNCIODEBUG"] = "1"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.aiohttp_reference", *urls, env=env,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert process.returncode == 0
    decisions: dict[str, str] = json.loads(out)
    return decisions


async def test_proxy_and_aiohttp_decide_alike_on_odd_answers(
        make_stack: StackFactory, raw_upstream: RawUpstream) -> None:
    stack = await through(make_stack, raw_upstream)
    proxied = {name: await proxy_decision(stack.client, f"{stack.url}/case/{name}")
               for name in CORPUS}
    urls = [f"{raw_upstream.url}/case/{name}" for name in CORPUS]
    strict, lenient = await asyncio.gather(reference(urls, True), reference(urls, False))
    strict = {url.rsplit("/", 1)[1]: decision for url, decision in strict.items()}
    lenient = {url.rsplit("/", 1)[1]: decision for url, decision in lenient.items()}
    assert {"accept", "refuse"} <= set(proxied.values())  # the corpus tells them apart
    differ = {name: (proxied[name], strict[name]) for name in CORPUS
              if proxied[name] != strict[name]}
    assert differ == {}, differ
    laxer = [name for name in CORPUS if lenient[name] == "refuse" != proxied[name]]
    assert laxer == []  # at least as strict as the client it replaced


async def test_non_utf8_header_bytes_are_a_502_end_to_end(
        make_stack: StackFactory, raw_upstream: RawUpstream) -> None:
    CORPUS["utf-8-value"] = ("HTTP/1.1 200 OK\r\nX-Name: café ☕\r\nContent-Length: 2\r\n\r\nok"
                             .encode())
    CORPUS["latin-1-value"] = b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nContent-Length: 2\r\n\r\nok"
    try:
        stack = await through(make_stack, raw_upstream)
        async with stack.client.get(stack.url + "/case/utf-8-value") as resp:
            assert resp.status == 200
            assert (b"X-Name", "café ☕".encode()) in resp.raw_headers  # unchanged
        async with stack.client.get(stack.url + "/case/latin-1-value") as resp:
            assert resp.status == 502
            body = await resp.json()
            assert body["request_id"] == resp.headers["X-Request-Id"]
            assert "X-Name" not in resp.headers
    finally:
        del CORPUS["utf-8-value"], CORPUS["latin-1-value"]


async def raw_request(port: int, data: bytes) -> bytes:
    """Send `data` to the proxy, then nothing more: the answer's head, or b"" at a close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
    finally:
        writer.close()


async def test_client_dripping_its_upload_gets_408_and_the_upstream_is_released(
        make_stack: StackFactory, raw_upstream: RawUpstream) -> None:
    stack = await through(make_stack, raw_upstream, timeout="1s")
    head = (b"POST /hold/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
    answer = await raw_request(port_of(stack), head + b"x" * 70_000)  # and no more
    assert answer.startswith(b"HTTP/1.1 408 ") or answer == b"", answer[:200]
    for _ in range(100):
        if raw_upstream.open == 0:
            break
        await asyncio.sleep(0.05)
    assert raw_upstream.requests and raw_upstream.open == 0  # the upstream was let go


async def test_busy_origin_queues_then_answers_503(make_stack: StackFactory,
                                                   raw_upstream: RawUpstream) -> None:
    stack = await through(make_stack, raw_upstream, max_connections=1,
                          connect_timeout="300ms", timeout="3s")
    held = asyncio.ensure_future(stack.client.get(stack.url + "/hold/1"))
    for _ in range(100):
        if raw_upstream.requests:
            break
        await asyncio.sleep(0.02)
    async with stack.client.get(stack.url + "/case/plain") as resp:
        assert resp.status == 503
        assert (await resp.json())["request_id"] == resp.headers["X-Request-Id"]
    assert len(raw_upstream.requests) == 1  # no second connection was opened
    async with (await held) as resp:
        assert resp.status == 504  # the held one times out after the route's 3 s
    async with stack.client.get(stack.url + "/case/plain") as resp:
        assert resp.status == 200  # its connection's slot came back
