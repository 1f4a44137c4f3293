"""The upstream hop's HTTP/1.1 client (proxy/upstream_client/) against raw loopback servers.

Every upstream here is an ``asyncio.start_server`` on 127.0.0.1 that reads the request bytes
and writes exactly the answer bytes a test chooses, so framing, keep-alive and faults are the
test's to decide. Nothing is mocked: the sockets are real and so is llhttp."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import re
import socket
import struct
import time
import tracemalloc
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.upstream_client import (
    BrokenAnswer,
    ClientStalled,
    ConnectFailed,
    Origin,
    PoolFull,
    ReadTimeout,
    UpstreamClientError,
    UpstreamPool,
    UpstreamResponse,
)
from tests.conftest import free_port

HOST = "127.0.0.1"
T = 2.0  # the timeout of exchanges that should not time out
SHORT = 0.3  # the timeout of those that should
MiB = 1024 * 1024
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Headers = list[tuple[str, str]]
Body = bytes | AsyncIterable[bytes] | None


# --------------------------------------------------------------------------- the upstream


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request exactly as it came over the wire: the head, then a body framed by its
    Content-Length or by chunks (kept raw, chunk sizes and all)."""
    raw = await reader.readuntil(b"\r\n\r\n")
    head = raw.lower()
    if match := re.search(rb"\r\ncontent-length: *(\d+)\r\n", head):
        return raw + await reader.readexactly(int(match[1]))
    if b"\r\ntransfer-encoding: chunked\r\n" in head:
        parts = [raw]
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line[:-2], 16)
            parts += [line, await reader.readexactly(size + 2)]
            if size == 0:
                return b"".join(parts)
    return raw


def dechunk(raw: bytes) -> bytes:
    """The payload of a chunked body (without trailers)."""
    out = bytearray()
    at = 0
    while True:
        end = raw.index(b"\r\n", at)
        size = int(raw[at:end], 16)
        if size == 0:
            return bytes(out)
        out += raw[end + 2:end + 2 + size]
        at = end + 2 + size + 2


class Peer:
    """One accepted connection, as the upstream sees it."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 log: list[bytes]) -> None:
        self.index = index
        self.reader = reader
        self.writer = writer
        self.requests: list[bytes] = []  # on this connection
        self._log = log  # on every connection of the upstream
        self.client_closed = asyncio.Event()

    async def request(self) -> bytes:
        raw = await read_request(self.reader)
        self.requests.append(raw)
        self._log.append(raw)
        return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_closed(self) -> None:
        """Read (and drop) whatever the client still sends, until it closes its end."""
        while await self.reader.read(65536):
            pass
        self.client_closed.set()

    def reset(self) -> None:
        """Close with an RST instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[Peer], Awaitable[None]]


class Upstream:
    """A raw HTTP/1.1 server: `handler` runs once per accepted connection, which is closed
    (FIN) when it returns. A client closing its end shows as `Peer.client_closed`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.peers: list[Peer] = []
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def origin(self) -> Origin:
        return ("http", HOST, self.port)

    @property
    def accepted(self) -> int:
        return len(self.peers)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(len(self.peers), reader, writer, self.requests)
        self.peers.append(peer)
        task = asyncio.get_running_loop().create_task(self._run(peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, peer: Peer) -> None:
        try:
            await self.handler(peer)
        except (EOFError, ConnectionError):  # EOFError: IncompleteReadError at a close
            peer.client_closed.set()
        except Exception as exc:  # a handler that went wrong: reported at teardown
            self.errors.append(exc)
        finally:
            peer.writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0)  # let the transports finish closing their sockets


Serve = Callable[[Handler], Awaitable[Upstream]]


MakePool = Callable[..., UpstreamPool]


@pytest.fixture
async def make_pool() -> AsyncIterator[MakePool]:
    """UpstreamPool(**limits), each closed after the test."""
    pools: list[UpstreamPool] = []

    def make(**limits: Any) -> UpstreamPool:
        pools.append(UpstreamPool(**limits))
        return pools[-1]

    yield make
    for pool in pools:
        await pool.close()
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture
def pool(make_pool: MakePool) -> UpstreamPool:
    return make_pool()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    started: list[Upstream] = []

    async def start(handler: Handler) -> Upstream:
        upstream = Upstream(handler)
        await upstream.start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        await upstream.close()
    assert [e for u in started for e in u.errors] == []


def answering(*answers: bytes) -> Handler:
    """On every connection: read a request, write the next of `answers` (the last repeats
    for ever), and so on until the client closes."""
    sent = 0

    async def handler(peer: Peer) -> None:
        nonlocal sent
        while True:
            await peer.request()
            answer = answers[min(sent, len(answers) - 1)]
            sent += 1
            await peer.send(answer)

    return handler


def held_until(count: int) -> Handler:
    """Answer OK, but the first answers only once `count` requests are in flight at once."""
    arrived = 0
    everyone = asyncio.Event()

    async def handler(peer: Peer) -> None:
        nonlocal arrived
        await peer.request()
        arrived += 1
        if arrived >= count:
            everyone.set()
        await everyone.wait()
        await peer.send(OK)
        await answering(OK)(peer)

    return handler


async def closed(peer: Peer, timeout: float = T) -> bool:
    """Whether the client closes this connection within `timeout`."""
    try:
        await asyncio.wait_for(peer.client_closed.wait(), timeout)
    except TimeoutError:
        return False
    return True


# --------------------------------------------------------------------------- the client side


@asynccontextmanager
async def exchange(pool: UpstreamPool, upstream: Upstream, method: str = "GET",
                   target: str = "/", headers: Headers | None = None, body: Body = None,
                   timeout: float = T, **options: Any) -> AsyncIterator[UpstreamResponse]:
    """An answer's head; released on the way out, whatever happened to its body.
    `options`: UpstreamPool.request's keyword arguments (length, connect_timeout, ...)."""
    response = await pool.request(method, upstream.origin, target,
                                  CIMultiDict(headers or [("Host", "app.internal")]), body,
                                  timeout, **options)
    try:
        yield response
    finally:
        response.release()


async def fetch(pool: UpstreamPool, upstream: Upstream, method: str = "GET",
                target: str = "/", headers: Headers | None = None, body: Body = None,
                timeout: float = T, **options: Any) -> tuple[UpstreamResponse, bytes]:
    """One whole exchange: the (released) answer and its body."""
    async with exchange(pool, upstream, method, target, headers, body, timeout,
                        **options) as response:
        return response, await response.read(timeout)


async def stream(*chunks: bytes, pause: float = 0.0) -> AsyncIterator[bytes]:
    """A streamed request body, as `_request_body` hands one over."""
    for chunk in chunks:
        if pause:
            await asyncio.sleep(pause)
        yield chunk


# --------------------------------------------------------------------------- 1. the request


async def test_request_head_goes_out_as_given(pool: UpstreamPool, serve: Serve) -> None:
    upstream = await serve(answering(OK))
    headers = [("Host", "app.internal:8080"), ("X-B", "2"), ("x-a", "1"), ("X-A", "again"),
               ("Accept", "*/*")]
    await fetch(pool, upstream, "GET", "/p/a%20b?q=1&r", headers)
    assert upstream.requests == [
        b"GET /p/a%20b?q=1&r HTTP/1.1\r\nHost: app.internal:8080\r\nX-B: 2\r\nx-a: 1\r\n"
        b"X-A: again\r\nAccept: */*\r\n\r\n"]  # no Content-Length or Transfer-Encoding added


@pytest.mark.parametrize(("body", "headers", "wire"), [
    (b"hello", [("Host", "app")],
     b"POST /u HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello"),
    (b"hello", [("Host", "app"), ("content-length", "99"), ("X-After", "1"),
                ("Transfer-Encoding", "chunked")],
     b"POST /u HTTP/1.1\r\nHost: app\r\nX-After: 1\r\nContent-Length: 5\r\n\r\nhello"),
    (b"", [("Host", "app")], b"POST /u HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\n\r\n"),
], ids=["length-added", "forwarded-framing-replaced", "empty"])
async def test_bytes_body_goes_out_with_its_length(pool: UpstreamPool, serve: Serve,
                                                   body: bytes, headers: Headers,
                                                   wire: bytes) -> None:
    upstream = await serve(answering(OK))
    _, answer = await fetch(pool, upstream, "POST", "/u", headers, body)
    assert answer == b"ok"
    assert upstream.requests == [wire]


async def test_streamed_body_without_length_goes_out_chunked(pool: UpstreamPool,
                                                             serve: Serve) -> None:
    upstream = await serve(answering(OK))
    big = b"z" * 300
    body = stream(b"ab", b"", b"cdef", big, b"")
    _, answer = await fetch(pool, upstream, "POST", "/u", [("Host", "app")], body)
    assert answer == b"ok"
    assert upstream.requests == [
        b"POST /u HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n4\r\ncdef\r\n12c\r\n" + big + b"\r\n0\r\n\r\n"]  # empty chunks skipped


async def test_empty_streamed_body_is_just_the_last_chunk(pool: UpstreamPool,
                                                          serve: Serve) -> None:
    upstream = await serve(answering(OK))
    await fetch(pool, upstream, "PUT", "/u", [("Host", "app")], stream(b""))
    assert upstream.requests == [
        b"PUT /u HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]


async def test_streamed_body_with_length_goes_out_raw(pool: UpstreamPool, serve: Serve) -> None:
    upstream = await serve(answering(OK))
    body = stream(b"ab", b"", b"cdef")
    await fetch(pool, upstream, "POST", "/u", [("Host", "app"), ("Content-Length", "2")], body,
                length=6)  # the length the proxy knows, not the header it was handed
    assert upstream.requests == [
        b"POST /u HTTP/1.1\r\nHost: app\r\nContent-Length: 6\r\n\r\nabcdef"]
    _, answer = await fetch(pool, upstream)  # the raw body ended exactly: the connection too
    assert answer == b"ok" and upstream.accepted == 1


async def test_forwarded_framing_headers_do_not_frame_a_stream(pool: UpstreamPool,
                                                              serve: Serve) -> None:
    upstream = await serve(answering(OK))
    headers = [("Host", "app"), ("Content-Length", "3"), ("Transfer-Encoding", "identity")]
    await fetch(pool, upstream, "POST", "/u", headers, stream(b"abcdef"))
    assert upstream.requests == [
        b"POST /u HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nabcdef\r\n0\r\n\r\n"]


@pytest.mark.parametrize("chunks", [(b"abc",), (b"abcdef", b"gh")], ids=["short", "long"])
async def test_stream_that_does_not_match_its_length_is_refused(pool: UpstreamPool, serve: Serve,
                                                               chunks: tuple[bytes, ...]) -> None:
    async def handler(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        await peer.until_closed()

    upstream = await serve(handler)
    with pytest.raises(BrokenAnswer):
        await fetch(pool, upstream, "POST", "/u", body=stream(*chunks), length=6)
    assert await closed(upstream.peers[0])  # never reused: its framing is out of step


async def test_large_streamed_upload_arrives_intact(pool: UpstreamPool, serve: Serve) -> None:
    payload = os.urandom(8 * MiB)

    async def handler(peer: Peer) -> None:
        raw = await peer.request()
        digest = hashlib.sha256(dechunk(raw.partition(b"\r\n\r\n")[2])).hexdigest().encode()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + digest)
        await answering(OK)(peer)

    upstream = await serve(handler)
    pieces = (payload[i:i + 65536] for i in range(0, len(payload), 65536))
    _, answer = await fetch(pool, upstream, "POST", "/up", body=stream(*pieces))
    assert answer == hashlib.sha256(payload).hexdigest().encode()


# --------------------------------------------------------------------------- 2. injection


@pytest.mark.parametrize(("target", "headers"), [
    ("/", [("Host", "app"), ("X-A", "1\r\nX-Evil: 1")]),
    ("/", [("Host", "app"), ("X-A", "1\nX-Evil: 1")]),
    ("/", [("Host", "app"), ("X-A", "1\rX-Evil: 1")]),
    ("/", [("Host", "app\r\n\r\nGET /admin HTTP/1.1")]),
    ("/", [("Host", "app"), ("X-A\r\nX-Evil", "1")]),
    ("/", [("Host", "app"), ("X-A\n", "1")]),
    ("/ HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET /x", [("Host", "app")]),
    ("/\n", [("Host", "app")]),
    ("/\r", [("Host", "app")]),
], ids=["value-crlf", "value-lf", "value-cr", "host-split", "name-crlf", "name-lf",
        "target-crlf", "target-lf", "target-cr"])
async def test_cr_or_lf_in_the_head_is_refused_before_sending(pool: UpstreamPool, serve: Serve,
                                                              target: str,
                                                              headers: Headers) -> None:
    upstream = await serve(answering(OK))
    for body in (None, b"x", stream(b"x")):
        with pytest.raises(BrokenAnswer):
            await pool.request("POST", upstream.origin, target, CIMultiDict(headers), body, T)
    await asyncio.sleep(0.05)
    assert upstream.accepted == 0 and upstream.requests == []
    _, answer = await fetch(pool, upstream)  # the pool is none the worse for it
    assert answer == b"ok"


async def test_unencodable_header_value_is_an_upstream_client_error(pool: UpstreamPool,
                                                                   serve: Serve) -> None:
    """`request` promises UpstreamClientError; a lone surrogate (a claim decoded from JSON
    can carry one, and `clean_value` keeps it) is not UTF-8 encodable."""
    upstream = await serve(answering(OK))
    with pytest.raises(UpstreamClientError):
        await pool.request("GET", upstream.origin, "/",
                           CIMultiDict([("Host", "app"), ("X-Name", "a\ud800b")]), None, T)
    assert upstream.accepted == 0


# --------------------------------------------------------------------------- 3. answers


async def test_content_length_body(pool: UpstreamPool, serve: Serve) -> None:
    upstream = await serve(answering(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"))
    response, body = await fetch(pool, upstream)
    assert (response.status, response.reason, body) == (200, "OK", b"hello world")
    assert response.content_length == 11 and not response.chunked
    assert list(response.headers.items()) == [("Content-Type", "text/plain"),
                                              ("Content-Length", "11")]


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
], ids=["plain", "extension-and-trailer"])
async def test_chunked_body_read_whole(pool: UpstreamPool, serve: Serve, answer: bytes) -> None:
    upstream = await serve(answering(answer, OK))
    response, body = await fetch(pool, upstream)
    assert body == b"hello world"
    assert response.chunked and response.content_length is None
    _, body = await fetch(pool, upstream)  # the last chunk ended the answer: still in step
    assert body == b"ok" and upstream.accepted == 1


async def test_chunked_body_is_handed_out_as_it_arrives(pool: UpstreamPool,
                                                        serve: Serve) -> None:
    pieces: asyncio.Queue[bytes] = asyncio.Queue()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            await peer.send(await pieces.get())

    upstream = await serve(handler)
    async with exchange(pool, upstream) as response:
        await pieces.put(b"3\r\none\r\n")
        assert await response.read_chunk(T) == b"one"
        await pieces.put(b"3\r\ntwo\r\n")
        assert await response.read_chunk(T) == b"two"  # before the answer has ended
        await pieces.put(b"0\r\n\r\n")
        assert await response.read_chunk(T) == b""
        assert await response.read_chunk(T) == b""  # the end stays the end
        assert await response.read(T) == b""


async def test_body_delimited_by_close_is_read_whole_and_not_reused(pool: UpstreamPool,
                                                                    serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the")
        await asyncio.sleep(0.02)
        await peer.send(b" end")  # and the connection closes

    upstream = await serve(handler)
    for _ in range(2):
        response, body = await fetch(pool, upstream)
        assert body == b"until the end"
        assert response.content_length is None and not response.chunked
    assert upstream.accepted == 2


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n",
], ids=["204", "304", "304-with-length"])
async def test_answers_without_a_body(pool: UpstreamPool, serve: Serve, answer: bytes) -> None:
    upstream = await serve(answering(answer, OK))
    response, body = await fetch(pool, upstream)
    assert response.status in (204, 304) and body == b""
    second, body = await fetch(pool, upstream)
    assert (second.status, body) == (200, b"ok")
    assert upstream.accepted == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
], ids=["content-length", "chunked"])
async def test_head_answer_has_no_body_and_keeps_the_connection(pool: UpstreamPool,
                                                                serve: Serve,
                                                                answer: bytes) -> None:
    upstream = await serve(answering(answer, OK))
    response, body = await fetch(pool, upstream, "HEAD")
    assert (response.status, body) == (200, b"")
    if b"Content-Length" in answer:
        assert response.content_length == 10  # what a GET would have carried
    _, body = await fetch(pool, upstream)
    assert body == b"ok"
    assert upstream.accepted == 1
    assert upstream.requests[0].startswith(b"HEAD / HTTP/1.1\r\n")


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "separate-writes"])
async def test_informational_answers_are_skipped(pool: UpstreamPool, serve: Serve,
                                                 split: bool) -> None:
    parts = [b"HTTP/1.1 100 Continue\r\n\r\n",
             b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nX-Hint: 1\r\n\r\n",
             b"HTTP/1.1 201 Created\r\nLocation: /x\r\nContent-Length: 4\r\n\r\ndone"]

    async def handler(peer: Peer) -> None:
        while True:
            await peer.request()
            if split:
                for part in parts:
                    await peer.send(part)
                    await asyncio.sleep(0.01)
            else:
                await peer.send(b"".join(parts))

    upstream = await serve(handler)
    response, body = await fetch(pool, upstream, "POST", body=b"data")
    assert (response.status, response.reason, body) == (201, "Created", b"done")
    assert list(response.headers.items()) == [("Location", "/x"), ("Content-Length", "4")]
    again, body = await fetch(pool, upstream, "POST", body=b"data")
    assert (again.status, body) == (201, b"done") and upstream.accepted == 1


async def test_repeated_set_cookie_headers_are_kept_in_order(pool: UpstreamPool,
                                                             serve: Serve) -> None:
    upstream = await serve(answering(
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nX-Other: o\r\nset-cookie: b=2; HttpOnly"
        b"\r\nSet-Cookie: c=3; Expires=Wed, 21 Oct 2015 07:28:00 GMT\r\n"
        b"Content-Length: 0\r\n\r\n"))
    response, _ = await fetch(pool, upstream)
    assert response.headers.getall("Set-Cookie") == [
        "a=1; Path=/", "b=2; HttpOnly", "c=3; Expires=Wed, 21 Oct 2015 07:28:00 GMT"]
    assert [name for name, _ in response.headers.items()] == [
        "Set-Cookie", "X-Other", "set-cookie", "Set-Cookie", "Content-Length"]


async def test_utf8_header_bytes_round_trip(pool: UpstreamPool, serve: Serve) -> None:
    raw = "café ☕".encode()
    upstream = await serve(answering(
        b"HTTP/1.1 200 OK\r\nX-Name: " + raw + b"\r\nContent-Length: 0\r\n\r\n"))
    response, _ = await fetch(pool, upstream)
    value = response.headers["X-Name"]
    assert value == "café ☕"
    await fetch(pool, upstream, headers=[("Host", "app"), ("X-Name", value)])
    assert upstream.requests[1] == b"GET / HTTP/1.1\r\nHost: app\r\nX-Name: " + raw + b"\r\n\r\n"


@pytest.mark.parametrize("raw", [b"caf\xe9", b"\xff\x80", b"ok \xc3"],
                         ids=["latin-1", "invalid", "truncated"])
async def test_non_utf8_header_bytes_are_a_broken_answer(pool: UpstreamPool, serve: Serve,
                                                         raw: bytes) -> None:
    # One rule: the proxy cannot pass them on unchanged (aiohttp writes UTF-8), so 502.
    upstream = await serve(answering(
        b"HTTP/1.1 200 OK\r\nX-Name: " + raw + b"\r\nContent-Length: 0\r\n\r\n"))
    with pytest.raises(BrokenAnswer):
        await fetch(pool, upstream)
    assert await closed(upstream.peers[0])


@pytest.mark.parametrize(("line", "status", "reason"), [
    (b"HTTP/1.1 299 Very Custom Reason", 299, "Very Custom Reason"),
    (b"HTTP/1.1 404 Nicht Gefunden", 404, "Nicht Gefunden"),
    (b"HTTP/1.1 200 \xe9t\xe9", 200, "\xe9t\xe9"),
    (b"HTTP/1.1 200", 200, ""),
], ids=["custom", "other-words", "latin-1", "none"])
async def test_reason_phrase_is_kept(pool: UpstreamPool, serve: Serve, line: bytes, status: int,
                                     reason: str) -> None:
    upstream = await serve(answering(line + b"\r\nContent-Length: 0\r\n\r\n"))
    response, _ = await fetch(pool, upstream)
    assert (response.status, response.reason) == (status, reason)


async def test_answer_trickling_in_a_few_bytes_at_a_time(pool: UpstreamPool,
                                                         serve: Serve) -> None:
    answer = (b"HTTP/1.1 207 Multi Status\r\nX-Long-Header-Name: some value\r\n"
              b"Set-Cookie: a=1\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    async def handler(peer: Peer) -> None:
        while True:
            await peer.request()
            for i in range(0, len(answer), 3):
                await peer.send(answer[i:i + 3])
                await asyncio.sleep(0.001)

    upstream = await serve(handler)
    response, body = await fetch(pool, upstream)
    assert (response.status, response.reason, body) == (207, "Multi Status", b"hello world")
    assert list(response.headers.items()) == [
        ("X-Long-Header-Name", "some value"), ("Set-Cookie", "a=1"),
        ("Transfer-Encoding", "chunked")]
    _, body = await fetch(pool, upstream)
    assert body == b"hello world" and upstream.accepted == 1


@pytest.mark.parametrize("coding", ["gzip", "chunked, gzip"])
async def test_body_with_a_non_chunked_transfer_coding_ends_at_close(pool: UpstreamPool,
                                                                     serve: Serve,
                                                                     coding: str) -> None:
    """RFC 9112 §6.3: a response whose last transfer coding is not chunked is delimited by
    the connection closing, exactly like one with no length at all."""
    payload = b"\x1f\x8b pretend gzip"

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding.encode()
                        + b"\r\n\r\n" + payload)  # and the connection closes

    upstream = await serve(handler)
    response, body = await fetch(pool, upstream)
    assert response.status == 200 and body == payload


# --------------------------------------------------------------------------- 4. keep-alive


async def test_sequential_requests_share_one_connection(pool: UpstreamPool,
                                                        serve: Serve) -> None:
    upstream = await serve(answering(OK))
    for i in range(3):
        _, body = await fetch(pool, upstream, target=f"/{i}")
        assert body == b"ok"
    assert upstream.accepted == 1
    assert [r.split(b" ")[1] for r in upstream.peers[0].requests] == [b"/0", b"/1", b"/2"]


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
], ids=["http-1.1", "chunked", "http-1.0-keep-alive"])
async def test_answers_that_keep_the_connection(pool: UpstreamPool, serve: Serve,
                                                answer: bytes) -> None:
    upstream = await serve(answering(answer))
    for _ in range(2):
        _, body = await fetch(pool, upstream)
        assert body == b"ok"
    assert upstream.accepted == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nConnection: Close\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
], ids=["connection-close", "connection-close-chunked", "http-1.0"])
async def test_answers_that_end_the_connection(pool: UpstreamPool, serve: Serve,
                                               answer: bytes) -> None:
    upstream = await serve(answering(answer))  # the upstream itself would keep it open
    for _ in range(2):
        _, body = await fetch(pool, upstream)
        assert body == b"ok"
    assert upstream.accepted == 2
    assert await closed(upstream.peers[0])


@pytest.mark.parametrize("reads", [0, 1], ids=["unread", "half-read"])
async def test_body_not_read_whole_closes_the_connection(pool: UpstreamPool, serve: Serve,
                                                         reads: int) -> None:
    upstream = await serve(answering(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", OK))
    async with exchange(pool, upstream) as response:
        await asyncio.sleep(0.02)  # all of it has arrived; the reader just stops early
        for _ in range(reads):
            assert await response.read_chunk(T) == b"hello"
    assert await closed(upstream.peers[0])
    _, body = await fetch(pool, upstream)
    assert body == b"ok" and upstream.accepted == 2


@pytest.mark.parametrize("extra", [
    b"garbage",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
], ids=["garbage", "second-answer"])
async def test_bytes_after_a_whole_answer_drop_the_connection(pool: UpstreamPool, serve: Serve,
                                                              extra: bytes) -> None:
    upstream = await serve(answering(OK + extra, OK))
    if extra == b"garbage":  # not HTTP: the first answer's framing is in doubt
        with pytest.raises(BrokenAnswer):
            await fetch(pool, upstream)
    else:
        _, body = await fetch(pool, upstream)
        assert body == b"ok"
    _, body = await fetch(pool, upstream)
    assert body == b"ok"
    assert upstream.accepted == 2
    assert await closed(upstream.peers[0])


async def test_a_second_answer_glued_on_does_not_rewrite_the_first(pool: UpstreamPool,
                                                                   serve: Serve) -> None:
    """One request, two answers in one write: the answer is the first, whole and as sent
    (the second only makes the connection untrustworthy)."""
    glued = b"HTTP/1.1 500 Boom\r\nX-Evil: 1\r\nContent-Length: 0\r\n\r\n"
    upstream = await serve(answering(OK + glued))
    response, body = await fetch(pool, upstream)
    assert (response.status, response.reason) == (200, "OK")
    assert list(response.headers.items()) == [("Content-Length", "2")]
    assert response.content_length == 2 and body == b"ok"


async def test_bytes_on_an_idle_connection_drop_it(pool: UpstreamPool, serve: Serve) -> None:
    unsolicited = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(OK)
            await unsolicited.wait()
            await peer.send(OK)  # an answer to nothing
            await peer.until_closed()
        else:
            await answering(OK)(peer)

    upstream = await serve(handler)
    await fetch(pool, upstream)
    unsolicited.set()
    assert await closed(upstream.peers[0])
    _, body = await fetch(pool, upstream)
    assert body == b"ok" and upstream.accepted == 2


async def test_concurrent_requests_use_separate_connections_then_both_pool(
        pool: UpstreamPool, serve: Serve) -> None:
    upstream = await serve(held_until(2))
    results = await asyncio.gather(fetch(pool, upstream), fetch(pool, upstream))
    assert [body for _, body in results] == [b"ok", b"ok"]
    assert upstream.accepted == 2
    assert len(pool._idle[upstream.origin]) == 2
    results = await asyncio.gather(fetch(pool, upstream), fetch(pool, upstream))
    assert [body for _, body in results] == [b"ok", b"ok"]
    assert upstream.accepted == 2
    assert [len(peer.requests) for peer in upstream.peers] == [2, 2]


async def test_idle_connection_past_keepalive_is_not_reused(make_pool: MakePool,
                                                            serve: Serve) -> None:
    pool = make_pool(keepalive=0.05)
    upstream = await serve(answering(OK))
    await fetch(pool, upstream)
    await asyncio.sleep(0.1)
    _, body = await fetch(pool, upstream)
    assert body == b"ok" and upstream.accepted == 2
    assert await closed(upstream.peers[0])


async def test_idle_connections_beyond_max_idle_are_closed(make_pool: MakePool,
                                                           serve: Serve) -> None:
    pool = make_pool(max_idle=1)
    upstream = await serve(held_until(2))
    await asyncio.gather(fetch(pool, upstream), fetch(pool, upstream))
    assert upstream.accepted == 2
    assert len(pool._idle[upstream.origin]) == 1
    deadline = time.monotonic() + T
    while not any(peer.client_closed.is_set() for peer in upstream.peers):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.02)
    assert sorted(peer.client_closed.is_set() for peer in upstream.peers) == [False, True]



@pytest.mark.parametrize("limit", ["keepalive", "max_idle", "high_water", "max_head",
                                   "max_header_lines", "max_field", "max_reason", "connect_timeout",
                                   "max_connections"])
@pytest.mark.parametrize("value", [0, -1])
def test_pool_limits_must_be_positive(limit: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"^UpstreamPool: {limit} must be > 0"):
        UpstreamPool(**{limit: value})


async def test_idle_connections_close_on_their_own_when_traffic_stops(
        make_pool: MakePool, serve: Serve) -> None:
    # No further request to this origin: the sweeper, not the next take, closes them.
    pool = make_pool(keepalive=0.05)
    upstream = await serve(held_until(2))
    await asyncio.gather(fetch(pool, upstream), fetch(pool, upstream))
    for peer in upstream.peers:
        assert await closed(peer)
    assert pool._idle == {}


async def test_releasing_twice_pools_the_connection_once(pool: UpstreamPool,
                                                         serve: Serve) -> None:
    upstream = await serve(answering(OK))
    response = await pool.request("GET", upstream.origin, "/", CIMultiDict(), None, T)
    assert await response.read(T) == b"ok"
    response.release()
    response.release()
    assert len(pool._idle[upstream.origin]) == 1
    results = await asyncio.gather(fetch(pool, upstream), fetch(pool, upstream))
    assert [body for _, body in results] == [b"ok", b"ok"]

# --------------------------------------------------------------------------- 5. stale


async def test_connection_the_upstream_closed_while_idle_is_replaced(pool: UpstreamPool,
                                                                     serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)  # and closes: its keep-alive timer is short

    upstream = await serve(handler)
    await fetch(pool, upstream)
    await asyncio.sleep(0.02)  # the FIN has reached the client
    _, body = await fetch(pool, upstream)
    assert body == b"ok" and upstream.accepted == 2


def closes_the_second_request_unanswered(peer: Peer) -> Awaitable[None]:
    """The first connection answers one request, then takes the next one in and closes
    without a byte of answer (the race with an upstream's keep-alive timer); later
    connections answer normally."""
    async def first() -> None:
        await peer.request()
        await peer.send(OK)
        await peer.request()

    return first() if peer.index == 0 else answering(OK)(peer)


@pytest.mark.parametrize(("method", "kind"), [
    ("GET", "none"), ("HEAD", "none"), ("DELETE", "none"), ("PUT", "bytes"),
    ("OPTIONS", "none"),
])
async def test_idempotent_request_on_a_stale_connection_is_retried(pool: UpstreamPool,
                                                                   serve: Serve, method: str,
                                                                   kind: str) -> None:
    upstream = await serve(closes_the_second_request_unanswered)
    await fetch(pool, upstream)
    body = b"abc" if kind == "bytes" else None
    response, _ = await fetch(pool, upstream, method, "/again", body=body)
    assert response.status == 200
    assert upstream.accepted == 2
    assert upstream.peers[0].requests[1] == upstream.peers[1].requests[0]  # sent twice, same


@pytest.mark.parametrize(("method", "kind"), [
    ("POST", "bytes"), ("POST", "none"), ("PATCH", "bytes"), ("POST", "stream"),
    ("PUT", "stream"), ("GET", "stream"),
])
async def test_non_replayable_request_on_a_stale_connection_fails(pool: UpstreamPool,
                                                                  serve: Serve, method: str,
                                                                  kind: str) -> None:
    upstream = await serve(closes_the_second_request_unanswered)
    await fetch(pool, upstream)
    body: Body = {"none": None, "bytes": b"abc"}.get(kind)
    if kind == "stream":
        body = stream(b"a", b"bc")
    with pytest.raises(BrokenAnswer) as caught:
        await fetch(pool, upstream, method, "/again", body=body)
    assert caught.value.kind == "broken_body"
    assert upstream.accepted == 1  # no second attempt
    assert len(upstream.peers[0].requests) == 2


async def test_a_stale_connection_is_retried_once_only(pool: UpstreamPool,
                                                       serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            await peer.request()
            await peer.send(OK)
        await peer.request()  # then closed unanswered, the fresh connection too

    upstream = await serve(handler)
    await fetch(pool, upstream)
    with pytest.raises(BrokenAnswer):
        await fetch(pool, upstream)
    assert upstream.accepted == 2


# --------------------------------------------------------------------------- 6. errors


async def test_connection_refused(pool: UpstreamPool) -> None:
    with pytest.raises(ConnectFailed) as caught:
        await pool.request("GET", ("http", HOST, free_port()), "/",
                           CIMultiDict([("Host", "app")]), None, T)
    assert caught.value.kind == "unreachable"
    assert isinstance(caught.value, UpstreamClientError)


async def test_no_answer_times_out(pool: UpstreamPool, serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.until_closed()

    upstream = await serve(handler)
    started = time.monotonic()
    with pytest.raises(ReadTimeout) as caught:
        await pool.request("GET", upstream.origin, "/", CIMultiDict([("Host", "app")]), None,
                           SHORT)
    elapsed = time.monotonic() - started
    assert caught.value.kind == "timeout"
    assert SHORT * 0.9 <= elapsed < SHORT + 0.4
    assert await closed(upstream.peers[0])  # the stuck connection is dropped


async def test_stall_mid_body_times_out(pool: UpstreamPool, serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await peer.until_closed()

    upstream = await serve(handler)
    async with exchange(pool, upstream, timeout=SHORT) as response:
        assert response.status == 200
        assert await response.read_chunk(SHORT) == b"0123456789"
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            await response.read_chunk(SHORT)
        assert SHORT * 0.9 <= time.monotonic() - started < SHORT + 0.4
    assert await closed(upstream.peers[0])


async def test_read_timeout_is_per_wait_not_for_the_whole_body(pool: UpstreamPool,
                                                               serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
        for byte in b"slow":
            await asyncio.sleep(0.1)
            await peer.send(bytes([byte]))
        await peer.until_closed()

    upstream = await serve(handler)
    _, body = await fetch(pool, upstream, timeout=SHORT)  # 0.4 s in all, 0.1 s per wait
    assert body == b"slow"


@pytest.mark.parametrize(("answer", "reset"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10, False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nxxxxxxxxxx\r\n", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nxxxxx", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nxxxxx", True),
], ids=["length-fin", "length-rst", "chunked-between-chunks", "chunked-mid-chunk-fin",
        "chunked-mid-chunk-rst"])
async def test_close_mid_body_is_a_broken_answer(pool: UpstreamPool, serve: Serve,
                                                 answer: bytes, reset: bool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await asyncio.sleep(0.05)  # the head has been read: the break is mid-body
        if reset:
            peer.reset()

    upstream = await serve(handler)
    with pytest.raises(BrokenAnswer) as caught:
        async with exchange(pool, upstream) as response:
            assert response.status == 200
            await response.read(T)
    assert caught.value.kind == "broken_body"


@pytest.mark.parametrize("answer", [
    b"garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok",
], ids=["garbage", "two-lengths", "length-and-chunked", "bare-lf-in-header", "bare-lf-lines",
        "nul-in-value", "obs-fold", "space-before-colon", "negative-length", "length-list",
        "bad-chunk-size", "http-2"])
async def test_invalid_answer_is_a_broken_answer(pool: UpstreamPool, serve: Serve,
                                                 answer: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await peer.until_closed()

    upstream = await serve(handler)
    with pytest.raises(BrokenAnswer):
        await fetch(pool, upstream)
    assert await closed(upstream.peers[0])


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
], ids=["with-upgrade", "bare"])
async def test_switching_protocols_unasked_is_a_broken_answer(pool: UpstreamPool, serve: Serve,
                                                              answer: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer + b"\x81\x02hi")  # a WebSocket frame after it
        await peer.until_closed()

    upstream = await serve(handler)
    with pytest.raises(BrokenAnswer):
        await fetch(pool, upstream)
    assert await closed(upstream.peers[0])


@pytest.mark.parametrize("read_first", [False, True], ids=["at-accept", "after-the-request"])
async def test_fresh_connection_closed_without_an_answer(pool: UpstreamPool, serve: Serve,
                                                         read_first: bool) -> None:
    async def handler(peer: Peer) -> None:
        if read_first:
            await peer.request()

    upstream = await serve(handler)
    with pytest.raises(BrokenAnswer) as caught:
        await fetch(pool, upstream)
    assert caught.value.kind == "broken_body"
    await asyncio.sleep(0.05)
    assert upstream.accepted == 1  # a fresh connection is never retried


async def test_request_body_that_breaks_off_fails_the_exchange(pool: UpstreamPool,
                                                               serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        peer.requests.append(await peer.reader.read())  # the body, up to the close

    async def upload() -> AsyncIterator[bytes]:
        yield b"abc"
        raise RuntimeError("the client went away")

    upstream = await serve(handler)
    with pytest.raises(BrokenAnswer):
        await fetch(pool, upstream, "POST", body=upload())
    for _ in range(100):
        if upstream.peers[0].requests:
            break
        await asyncio.sleep(0.01)
    assert upstream.peers[0].requests == [b"3\r\nabc\r\n"]  # never a last chunk: not "complete"


# --------------------------------------------------------------------------- 7. back-pressure


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_large_download_read_slowly_stays_bounded(pool: UpstreamPool, serve: Serve,
                                                        framing: str) -> None:
    payload = os.urandom(8 * MiB)

    async def handler(peer: Peer) -> None:
        await peer.request()
        if framing == "content-length":
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload)
                            + payload)
        else:
            await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(payload), 100_000):
                piece = payload[i:i + 100_000]
                await peer.send(b"%x\r\n%b\r\n" % (len(piece), piece))
            await peer.send(b"0\r\n\r\n")
        await answering(OK)(peer)

    upstream = await serve(handler)
    digest = hashlib.sha256()
    received = 0
    async with exchange(pool, upstream) as response:
        await asyncio.sleep(0.05)  # the upstream runs ahead of a reader that does not read
        peak = response._buffered
        while True:
            peak = max(peak, response._buffered)
            chunk = await response.read_chunk(T)
            if not chunk:
                break
            digest.update(chunk)
            received += len(chunk)
            await asyncio.sleep(0)  # a slow consumer: the socket gets a turn between reads
    assert received == len(payload)
    assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()
    assert pool.high_water <= peak <= pool.high_water + MiB
    _, body = await fetch(pool, upstream)  # read whole: pooled, and reading again
    assert body == b"ok" and upstream.accepted == 1


# --------------------------------------------------------------------------- 8. early answer


@pytest.mark.parametrize("connection_close", [True, False], ids=["close", "keep-alive"])
async def test_early_answer_to_a_streamed_upload(pool: UpstreamPool, serve: Serve,
                                                 caplog: pytest.LogCaptureFixture,
                                                 connection_close: bool) -> None:
    head = b"HTTP/1.1 413 Payload Too Large\r\n"
    if connection_close:
        head += b"Connection: close\r\n"

    async def handler(peer: Peer) -> None:
        if peer.index > 0:
            await answering(OK)(peer)
        else:
            await peer.reader.readuntil(b"\r\n\r\n")  # the head only: too big, whatever
            await peer.send(head + b"Content-Length: 8\r\n\r\ntoo big!")  # follows
            await peer.until_closed()

    never = asyncio.Event()
    generator_closed: list[bool] = []

    async def upload() -> AsyncIterator[bytes]:
        try:
            yield b"x" * 65536
            await never.wait()  # a client still uploading
            yield b"never sent"
        finally:
            generator_closed.append(True)

    upstream = await serve(handler)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        async with exchange(pool, upstream, "POST", "/upload", body=upload()) as response:
            assert (response.status, response.reason) == (413, "Payload Too Large")
            assert await response.read(T) == b"too big!"
            sender = response._sender
            assert sender is not None and not sender.done()
        done, _ = await asyncio.wait({sender}, timeout=T)
        assert done == {sender} and sender.cancelled()
        assert sender not in asyncio.all_tasks()
        assert generator_closed == [True]
        assert await closed(upstream.peers[0])  # a half-sent body: never pooled
        _, body = await fetch(pool, upstream)
        assert body == b"ok" and upstream.accepted == 2
        gc.collect()
        await asyncio.sleep(0)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


# --------------------------------------------------------------------------- 9. close


async def test_pool_close_closes_idle_connections(pool: UpstreamPool, serve: Serve) -> None:
    upstream = await serve(held_until(2))
    await asyncio.gather(fetch(pool, upstream), fetch(pool, upstream))
    assert not any(peer.client_closed.is_set() for peer in upstream.peers)
    await pool.close()
    for peer in upstream.peers:
        assert await closed(peer)
    assert pool._idle == {}


async def test_answer_released_after_pool_close_is_not_pooled(pool: UpstreamPool,
                                                              serve: Serve) -> None:
    upstream = await serve(answering(OK))
    async with exchange(pool, upstream) as response:
        await pool.close()
        assert await response.read(T) == b"ok"
    assert await closed(upstream.peers[0])
    assert pool._idle == {}


# --------------------------------------------------------------------------- timeouts, again


async def test_slow_upload_is_not_cut_by_the_answer_timeout(pool: UpstreamPool,
                                                            serve: Serve) -> None:
    """Each piece of a streamed upload arrives well within the timeout, the whole takes
    longer than it. The upstream can only answer once it has the body, so the wait for the
    answer must not run out while the body is still going out (aiohttp, the client before,
    started its read timeout once the body was sent)."""
    upstream = await serve(answering(OK))
    body = stream(*(b"x" * 1000 for _ in range(6)), pause=0.07)  # 0.42 s in all
    response, answer = await fetch(pool, upstream, "POST", "/up", body=body, timeout=0.25)
    assert (response.status, answer) == (200, b"ok")


# --------------------------------------------------------------------------- 7. limits


def answering_once(answer: bytes) -> Handler:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await peer.until_closed()

    return handler


HEAD_CASES = [
    # (answer, within the caps?) with max_head=4096, max_header_lines=10, max_reason=32,
    # max_field=1024
    (b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 9 + b"Content-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 10 + b"Content-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 " + b"r" * 32 + b"\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 " + b"r" * 33 + b"\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 1000 + b"\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 1100 + b"\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\n" + (b"X-B: " + b"b" * 900 + b"\r\n") * 4
     + b"Content-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\n" + (b"X-B: " + b"b" * 900 + b"\r\n") * 5
     + b"Content-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 1000 + OK, False),
]


@pytest.mark.parametrize(("answer", "fits"), HEAD_CASES, ids=[
    "lines-at-cap", "lines-past-cap", "reason-at-cap", "reason-past-cap", "field-under-cap",
    "field-past-cap", "head-under-cap", "head-past-cap", "endless-1xx"])
async def test_answer_head_is_capped(make_pool: MakePool, serve: Serve, answer: bytes,
                                     fits: bool) -> None:
    pool = make_pool(max_head=4096, max_header_lines=10, max_reason=32, max_field=1024)
    upstream = await serve(answering_once(answer))
    if fits:
        response, _ = await fetch(pool, upstream)
        assert response.status == 200
    else:
        with pytest.raises(BrokenAnswer):
            await fetch(pool, upstream)
        assert await closed(upstream.peers[0])


@pytest.mark.parametrize("opening", [
    b"HTTP/1.1 200 OK\r\nX-Big: ", b"HTTP/1.1 200 ", b"HTTP/1.1 200 OK\r\n"],
    ids=["endless-value", "endless-reason", "endless-lines"])
async def test_endless_head_is_cut_with_memory_flat(make_pool: MakePool, serve: Serve,
                                                    opening: bytes) -> None:
    """llhttp keeps a header it has not seen the end of: without the byte cap, an upstream
    sending one without end would grow the proxy without limit."""
    pool = make_pool(max_head=64 * 1024)
    filler = b"X-A: 1\r\n" * 8192 if opening.endswith(b"\r\n") else b"a" * 65536
    sent = 0

    async def handler(peer: Peer) -> None:
        nonlocal sent
        await peer.request()
        await peer.send(opening)
        while sent < 256 * MiB:
            await peer.send(filler)
            sent += len(filler)

    upstream = await serve(handler)
    tracemalloc.start()
    try:
        with pytest.raises(BrokenAnswer):
            await fetch(pool, upstream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert await closed(upstream.peers[0])
    assert sent < 256 * MiB  # cut off, not read to the end
    assert peak < 4 * MiB, peak


async def test_client_dripping_its_upload_is_cut_and_the_connection_dropped(
        pool: UpstreamPool, serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        await peer.until_closed()  # reads whatever body comes, never answers

    upstream = await serve(handler)
    body = stream(b"a", b"b", pause=SHORT * 4)  # the first byte already late
    with pytest.raises(ClientStalled) as caught:
        await asyncio.wait_for(fetch(pool, upstream, "POST", body=body, timeout=SHORT), T)
    assert caught.value.kind == "client_timeout"
    assert await closed(upstream.peers[0])
    assert pool._open == {}


async def test_connect_timeout_is_apart_from_the_answer_timeout(pool: UpstreamPool,
                                                                serve: Serve) -> None:
    # A TLS handshake the server never answers: the connect phase hangs on loopback.
    silent = await serve(lambda peer: peer.until_closed())
    with pytest.raises(ReadTimeout):
        await asyncio.wait_for(
            pool.request("GET", ("https", HOST, silent.port), "/", CIMultiDict([("Host", "a")]),
                         None, 60.0, connect_timeout=SHORT), T)
    assert pool._open == {}

    async def late(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(SHORT * 3)  # longer than the connect timeout, within the answer's
        await peer.send(OK)
        await peer.until_closed()

    upstream = await serve(late)
    _, body = await fetch(pool, upstream, timeout=T, connect_timeout=SHORT)
    assert body == b"ok"


async def test_connections_per_origin_are_capped_and_queued(make_pool: MakePool,
                                                            serve: Serve) -> None:
    pool = make_pool(max_connections=2)
    go = asyncio.Event()

    async def handler(peer: Peer) -> None:
        while True:
            await peer.request()
            await go.wait()
            await peer.send(OK)

    upstream = await serve(handler)
    tasks = [asyncio.ensure_future(fetch(pool, upstream)) for _ in range(3)]
    deadline = time.monotonic() + T
    while len(upstream.requests) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert upstream.accepted == 2 and not any(task.done() for task in tasks)  # one queued
    go.set()
    answers = await asyncio.gather(*tasks)
    assert [body for _, body in answers] == [b"ok"] * 3
    assert upstream.accepted == 2  # the queued request took a connection that came free


async def test_queue_for_a_connection_times_out(make_pool: MakePool, serve: Serve) -> None:
    pool = make_pool(max_connections=1, connect_timeout=SHORT)

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.until_closed()  # holds the only connection

    upstream = await serve(handler)
    held = asyncio.ensure_future(fetch(pool, upstream, timeout=T * 5))
    while not upstream.requests:
        await asyncio.sleep(0.01)
    with pytest.raises(PoolFull) as caught:
        await asyncio.wait_for(fetch(pool, upstream), T)
    assert caught.value.kind == "pool_full" and upstream.accepted == 1
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert await closed(upstream.peers[0])
    await asyncio.sleep(0.02)
    assert pool._open == {} and pool._waiting == {}


async def test_failed_connects_give_their_slot_back(make_pool: MakePool) -> None:
    pool = make_pool(max_connections=1, connect_timeout=SHORT)
    for _ in range(3):  # a leaked slot would make the second one PoolFull
        with pytest.raises(ConnectFailed):
            await pool.request("GET", ("http", HOST, free_port()), "/",
                               CIMultiDict([("Host", "app")]), None, T)
    assert pool._open == {}
