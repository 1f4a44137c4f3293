"""The upstream hop's HTTP/1.1 client: keep-alive pool per origin, llhttp parsing, streaming.

aiohttp's ClientSession spent about 250 µs of CPU on every forwarded request (its
`ClientRequest`, tracing, timers and response objects: see bench/results.md), more than the
whole rest of the request path. This client does only what a reverse proxy needs: send the
head (and a body, streamed with back-pressure), parse the answer with llhttp (httptools, the
parser behind uvicorn and aiohttp), hand its body out chunk by chunk, and keep the connection
for the next request when both sides allow it. WebSockets still go through aiohttp.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable
from typing import cast

import httptools
from multidict import CIMultiDict

KEEPALIVE = 30.0  # seconds an idle connection is kept (aiohttp's value before)
MAX_IDLE = 256  # idle connections kept per origin; more are closed
HIGH_WATER = 256 * 1024  # buffered body bytes before reading from the upstream pauses
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
Origin = tuple[str, str, int]  # (scheme, host, port)


class UpstreamClientError(Exception):
    """The upstream could not be used; `kind` is the metric label ("unreachable", ...)."""

    kind = "unreachable"


class ConnectFailed(UpstreamClientError):
    """No connection: refused, unresolvable, TLS handshake failed."""


class ReadTimeout(UpstreamClientError):
    kind = "timeout"


class BrokenAnswer(UpstreamClientError):
    """The connection closed or the upstream sent something that is not HTTP/1.1."""

    kind = "broken_body"


class _Stale(UpstreamClientError):
    """A pooled connection closed before any byte of the answer: safe to retry once."""


class UpstreamResponse:
    """One answer: status, reason and headers once received; the body read as it arrives.
    Also the parser's callback object. `release()` must be called when done with it."""

    __slots__ = ("status", "reason", "headers", "content_length", "chunked", "_conn",
                 "_head", "_names", "_raw", "_headers_done", "_informational", "_complete",
                 "_keep_alive", "_reusable", "_until_eof", "_chunks", "_buffered", "_error",
                 "_waiter", "_received", "_parser", "_sender")

    def __init__(self, conn: _Connection, head: bool) -> None:
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.content_length: int | None = None
        self.chunked = False
        self._conn = conn
        self._head = head
        self._raw: list[tuple[bytes, bytes]] = []
        self._names = b""
        self._headers_done = False
        self._informational = False
        self._complete = False
        self._keep_alive = False
        self._reusable = True
        self._until_eof = False
        self._received = False  # any byte of the answer arrived
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._error: UpstreamClientError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._sender: asyncio.Task[None] | None = None  # a streamed request body going out

    # -- llhttp callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:  # bytes after the answer: this connection cannot be trusted again
            self._reusable = False

    # After a complete answer, the parser's callbacks for anything that follows are ignored
    # (the connection is already marked unusable): nothing may rewrite the answer.
    def on_status(self, reason: bytes) -> None:
        if not self._complete:
            self._names += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._complete:
            self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._informational = True  # 100 Continue, 103 Early Hints: not forwarded
            self._raw.clear()
            self._names = b""
            return
        self.status = status
        self.reason = self._names.decode("latin-1")
        headers = self.headers
        length = None
        coded = False
        for name, value in self._raw:
            text = value.decode("utf-8", "surrogateescape")
            headers.add(name.decode("latin-1"), text)
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(text)  # llhttp already refused a bad or repeated one
            elif lowered == b"transfer-encoding":
                coded = True  # RFC 9112 §6.3: chunked only if it is the last coding;
                self.chunked = text.rpartition(",")[2].strip().lower() == "chunked"
        self._raw = []
        if coded:  # any other coding: the body ends when the connection closes
            length = None
        self.content_length = length
        self._keep_alive = bool(self._parser.should_keep_alive())
        self._headers_done = True
        if status == 101:
            self._fail(BrokenAnswer("the upstream switched protocols unasked"))
            return
        no_body = self._head or status in (204, 304)
        self._until_eof = not (no_body or self.chunked or length is not None)
        if self._head:
            self._complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            self._reusable = False
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER:
            self._conn.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._complete:
            self._complete = True
            self._wake()

    # -- connection events ----------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BrokenAnswer("the upstream switched protocols unasked"))
        except httptools.HttpParserError:
            if self._complete:
                self._reusable = False  # garbage after a whole answer: drop the connection
            else:
                self._fail(BrokenAnswer("the upstream's answer is not valid HTTP/1.1"))

    def lost(self, reused: bool) -> None:
        if self._complete:
            return
        if self._headers_done and self._until_eof:
            self._keep_alive = False
            self._complete = True  # a body delimited by the connection closing has ended
        elif reused and not self._received:
            self._fail(_Stale("the pooled connection was closed"))
        else:
            self._fail(BrokenAnswer("the upstream closed the connection mid-answer"))
        self._wake()

    def _fail(self, error: UpstreamClientError) -> None:
        self._reusable = False
        if not self._complete and self._error is None:  # a whole answer stays readable
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        loop = self._conn.loop
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    # -- reading --------------------------------------------------------------------------
    async def _headers(self, timeout: float) -> None:
        while not self._headers_done and self._error is None:
            # While a streamed body is still going out, its own writes are timed (and a
            # slow client is not the upstream's fault): the answer's clock starts after it.
            sending = self._sender is not None and not self._sender.done()
            await self._wait(None if sending else timeout)
        if self._error is not None:
            raise self._error

    async def read_chunk(self, timeout: float) -> bytes:
        """The next piece of the body, b"" at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            await self._wait(timeout)
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= HIGH_WATER // 4:
            self._conn.resume_reading()
        return chunk

    async def read(self, timeout: float) -> bytes:
        """The whole body (for answers known to be small)."""
        parts = []
        while chunk := await self.read_chunk(timeout):
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Back to the pool if the answer was read whole and both sides keep the
        connection alive; closed otherwise. Calling it again does nothing."""
        conn = self._conn
        if conn.response is not self:
            return
        del self._parser  # it refers back to this object: leave no cycle for the GC
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            self._reusable = False
        if (self._complete and not self._chunks and self._reusable and self._keep_alive
                and self._error is None):
            conn.pool.put(conn)
        else:
            conn.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout("the upstream did not answer in time"))


class _Connection(asyncio.Protocol):
    __slots__ = ("loop", "pool", "origin", "transport", "closed", "reused", "idle_since",
                 "response", "_paused", "_drain")

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: UpstreamPool,
                 origin: Origin) -> None:
        self.loop = loop
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.response: UpstreamResponse | None = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response.lost(self.reused)
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(BrokenAnswer("the upstream closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self.response is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self.response.feed(data)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    async def drain(self, timeout: float) -> None:
        if self.closed:
            raise BrokenAnswer("the upstream closed the connection")
        if not self._paused:
            return
        drain = self._drain = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, drain)
        try:
            await drain
        finally:
            timer.cancel()
            self._drain = None

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed and not self.transport.is_reading():
            self.transport.resume_reading()

    def close(self) -> None:
        self.response = None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()


class UpstreamPool:
    """Keep-alive connections per (scheme, host, port), owned by the app; closed with it."""

    def __init__(self) -> None:
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closing = False
        self._sweeper: asyncio.TimerHandle | None = None

    def put(self, conn: _Connection) -> None:
        conn.response = None
        if self._closing or conn.closed:
            conn.close()
            return
        idle = self._idle.setdefault(conn.origin, deque())
        now = time.monotonic()
        conn.idle_since = now
        idle.append(conn)
        while idle and (len(idle) > MAX_IDLE or idle[0].closed
                        or now - idle[0].idle_since > KEEPALIVE):
            idle.popleft().close()
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(KEEPALIVE, self._sweep, conn.loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections idle for longer than KEEPALIVE, also for origins no request
        goes to any more (each deque is oldest first)."""
        self._sweeper = None
        now = time.monotonic()
        for origin, idle in list(self._idle.items()):
            while idle and (idle[0].closed or now - idle[0].idle_since > KEEPALIVE):
                idle.popleft().close()
            if not idle:
                del self._idle[origin]
        if self._idle and not self._closing:
            self._sweeper = loop.call_later(KEEPALIVE, self._sweep, loop)

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have timed out
            if not conn.closed and now - conn.idle_since <= KEEPALIVE:
                conn.reused = True
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        conn = _Connection(loop, self, origin)
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: conn, host, port, ssl=tls)
        except TimeoutError:
            raise ReadTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: "
                                f"{type(exc).__name__}") from None
        return conn

    async def request(self, method: str, origin: Origin, target: str,
                      headers: CIMultiDict[str], body: bytes | AsyncIterable[bytes] | None,
                      timeout: float) -> UpstreamResponse:
        """Send one request and wait for the head of its answer. `body` is bytes (sent
        with the head), an async iterable (streamed: raw when `headers` has a
        Content-Length, chunked otherwise) or None. Raises UpstreamClientError."""
        head = _head(method, target, headers, body)
        # bytes or None are sent with the head; anything else is an async iterable (an
        # isinstance check against the ABC costs more than the rest of this function).
        streamed = body is not None and not isinstance(body, bytes)
        retry = not streamed and method in IDEMPOTENT
        while True:
            conn = self._take(origin) or await self._connect(origin, timeout)
            response = UpstreamResponse(conn, method == "HEAD")
            conn.response = response
            sender: asyncio.Task[None] | None = None
            if streamed:
                conn.write(head)
                sender = asyncio.ensure_future(_send_body(
                    conn, cast(AsyncIterable[bytes], body), headers, timeout))
                _watch_sender(sender, response)
            else:
                conn.write(head + cast(bytes, body) if body else head)
            try:
                await response._headers(timeout)
            except _Stale:
                conn.close()
                if sender is not None:
                    sender.cancel()
                if retry:
                    retry = False
                    continue
                raise BrokenAnswer("the upstream closed the connection") from None
            except BaseException:
                conn.close()
                if sender is not None:
                    sender.cancel()
                raise
            return response

    async def close(self) -> None:
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()


def _head(method: str, target: str, headers: CIMultiDict[str],
          body: bytes | AsyncIterable[bytes] | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *map(": ".join, headers.items())]
    if isinstance(body, bytes):
        if "content-length" not in headers:
            lines.append(f"Content-Length: {len(body)}")
    elif body is not None and "content-length" not in headers:
        lines.append("Transfer-Encoding: chunked")
    # No CR or LF in any line: a value or name carrying one would inject a header or split
    # the request (the request line and names are checked the same way). `in` is a memchr
    # scan; counting them in the joined head cost five times more (str.count is bytewise).
    fields = "".join(lines)
    if "\n" in fields or "\r" in fields:
        raise BrokenAnswer("refusing to send a header containing CR or LF")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from the wire
        raise BrokenAnswer("refusing to send a header that is not encodable") from None


async def _send_body(conn: _Connection, body: AsyncIterable[bytes],
                     headers: CIMultiDict[str], timeout: float) -> None:
    chunked = "content-length" not in headers
    async for chunk in body:
        if not chunk:
            continue
        if chunked:
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            conn.write(chunk)
        await conn.drain(timeout)
    if chunked:
        conn.write(b"0\r\n\r\n")


def _watch_sender(sender: asyncio.Task[None], response: UpstreamResponse) -> None:
    """A request body that fails to go out (the client broke off) fails the exchange, and
    its connection is never reused."""
    response._sender = sender

    def done(task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if task.cancelled():
            response._reusable = False
        elif isinstance(error, UpstreamClientError):
            response._fail(error)  # the upstream stopped reading it (timeout) or closed
        elif error is not None:
            response._fail(BrokenAnswer("the request body could not be sent"))
        response._wake()  # the answer's own clock may start now
    sender.add_done_callback(done)

