"""The pool: idle keep-alive connections per origin, and one request/answer exchange over
one of them (retried once on a connection the upstream closed while it sat idle)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable
from typing import cast

from multidict import CIMultiDict

from .connection import Connection, Origin
from .errors import BrokenAnswer, ConnectFailed, PoolFull, ReadTimeout, StaleConnection
from .response import UpstreamResponse
from .wire import request_head

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class UpstreamPool:
    """Keep-alive connections per (scheme, host, port), owned by the app; closed with it.

    `keepalive`: seconds an idle connection is kept; `max_idle`: idle connections kept per
    origin (more are closed); `high_water`: body bytes an answer buffers before reading
    from its upstream pauses (it resumes at a quarter of that).

    Limits on what an upstream may cost: `max_head` bytes of an answer's head (1xx answers
    included), `max_header_lines`, `max_field` bytes of one header's name and value and
    `max_reason` bytes of its reason phrase (past any, BrokenAnswer; the last three are
    aiohttp's client defaults, so nothing it accepted is refused now); `connect_timeout`
    seconds to connect, apart from the answer's timeout; `max_connections` open per
    origin, beyond which a request queues for one at most `connect_timeout` (then
    PoolFull). The last two are defaults a request may override."""

    def __init__(self, *, keepalive: float = 30.0, max_idle: int = 256,
                 high_water: int = 256 * 1024, max_head: int = 64 * 1024,
                 max_header_lines: int = 128, max_field: int = 8190, max_reason: int = 8190,
                 connect_timeout: float = 10.0, max_connections: int = 512) -> None:
        for name, value in (("keepalive", keepalive), ("max_idle", max_idle),
                            ("high_water", high_water), ("max_head", max_head),
                            ("max_header_lines", max_header_lines), ("max_field", max_field),
                            ("max_reason", max_reason),
                            ("connect_timeout", connect_timeout),
                            ("max_connections", max_connections)):
            if not value > 0:
                raise ValueError(f"UpstreamPool: {name} must be > 0, not {value!r}")
        self.keepalive = keepalive
        self.max_idle = max_idle
        self.high_water = high_water
        self.caps = (max_head, max_header_lines, max_reason, max_field, min(max_head, max_field))
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self._open: dict[Origin, int] = {}  # connections per origin, idle or busy
        self._waiting: dict[Origin, deque[asyncio.Future[None]]] = {}  # queued for one
        self._idle: dict[Origin, deque[Connection]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closing = False
        self._sweeper: asyncio.TimerHandle | None = None

    def put(self, conn: Connection) -> None:
        """Keep `conn` for the next request to its origin (a released answer's)."""
        conn.response = None
        if self._closing or conn.closed:
            conn.close()
            return
        idle = self._idle.setdefault(conn.origin, deque())
        now = time.monotonic()
        conn.idle_since = now
        idle.append(conn)
        if conn.origin in self._waiting:
            self._wake_one(conn.origin)  # a queued request may take it
        keepalive = self.keepalive
        while idle and (len(idle) > self.max_idle or idle[0].closed
                        or now - idle[0].idle_since > keepalive):
            idle.popleft().close()
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(keepalive, self._sweep, conn.loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections idle for longer than `keepalive`, also for origins no request
        goes to any more (each deque is oldest first)."""
        self._sweeper = None
        now = time.monotonic()
        keepalive = self.keepalive
        for origin, idle in list(self._idle.items()):
            while idle and (idle[0].closed or now - idle[0].idle_since > keepalive):
                idle.popleft().close()
            if not idle:
                del self._idle[origin]
        if self._idle and not self._closing:
            self._sweeper = loop.call_later(keepalive, self._sweep, loop)

    def _take(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have timed out
            if not conn.closed and now - conn.idle_since <= self.keepalive:
                conn.reused = True
                return conn
            conn.close()
        return None

    def gone(self, origin: Origin) -> None:
        """A connection to `origin` closed (each once): its slot goes to a queued request."""
        left = self._open.get(origin, 0) - 1
        if left > 0:
            self._open[origin] = left
        else:
            self._open.pop(origin, None)
        if origin in self._waiting:
            self._wake_one(origin)

    def _wake_one(self, origin: Origin) -> None:
        waiting = self._waiting[origin]
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        if not waiting:
            del self._waiting[origin]

    async def _slot(self, origin: Origin, timeout: float, limit: int) -> Connection | None:
        """Wait, at most `timeout`, until `origin` has a connection free (returned) or
        fewer than `limit` open (None: the caller may open one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._open.get(origin, 0) >= limit:
            left = deadline - loop.time()
            if left <= 0:
                raise PoolFull(f"all {limit} connections to {origin[1]}:{origin[2]} are busy")
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiting.setdefault(origin, deque()).append(waiter)
            try:
                async with asyncio.timeout(left):
                    await waiter
            except TimeoutError:
                pass  # the loop's check raises PoolFull
            finally:
                waiting = self._waiting.get(origin)
                if waiting is not None and waiter in waiting:
                    waiting.remove(waiter)
                    if not waiting:
                        del self._waiting[origin]
            if conn := self._take(origin):
                return conn
        return None

    async def _connect(self, origin: Origin, timeout: float, limit: int,
                       tls: ssl.SSLContext | None, server_name: str | None) -> Connection:
        if self._open.get(origin, 0) >= limit and (conn := await self._slot(origin, timeout,
                                                                           limit)):
            return conn
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        if scheme == "https" and tls is None:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        conn = Connection(loop, self, origin)
        self._open[origin] = self._open.get(origin, 0) + 1
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: conn, host, port, ssl=tls,
                                             server_hostname=server_name if tls else None)
        except TimeoutError:
            conn.close()
            raise ReadTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            raise ConnectFailed(f"cannot connect to {host}:{port}: "
                                f"{type(exc).__name__}") from None
        except BaseException:
            conn.close()
            raise
        return conn

    async def request(self, method: str, origin: Origin, target: str,
                      headers: CIMultiDict[str], body: bytes | AsyncIterable[bytes] | None,
                      timeout: float, *, length: int | None = None,
                      connect_timeout: float | None = None, max_connections: int | None = None,
                      tls: ssl.SSLContext | None = None,
                      server_name: str | None = None) -> UpstreamResponse:
        """Send one request and wait for the head of its answer. `body` is bytes (sent
        with the head), an async iterable (streamed: `length` bytes raw when the length is
        known, chunked otherwise) or None; a Content-Length or Transfer-Encoding among
        `headers` is ignored. `tls` (default: the system's trust) and `server_name` (the
        name checked and sent as SNI; default the host) apply to https origins.
        Raises UpstreamClientError."""
        head = request_head(method, target, headers, body, length)
        # bytes or None are sent with the head; anything else is an async iterable (an
        # isinstance check against the ABC costs more than the rest of this function).
        streamed = body is not None and not isinstance(body, bytes)
        retry = not streamed and method in IDEMPOTENT
        while True:
            conn = self._take(origin) or await self._connect(
                origin, connect_timeout or self.connect_timeout,
                max_connections or self.max_connections, tls, server_name)
            response = UpstreamResponse(conn, method == "HEAD", self.high_water, self.caps)
            conn.response = response
            sender: asyncio.Task[None] | None = None
            if streamed:
                conn.write(head)
                sender = asyncio.ensure_future(conn.send_body(
                    cast(AsyncIterable[bytes], body), length, timeout))
                response.watch_sender(sender)
            else:
                conn.write(head + cast(bytes, body) if body else head)
            try:
                await response.wait_head(timeout)
            except StaleConnection:
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
