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
from .errors import BrokenAnswer, ConnectFailed, ReadTimeout, StaleConnection
from .response import UpstreamResponse
from .wire import chunked_upload, request_head

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class UpstreamPool:
    """Keep-alive connections per (scheme, host, port), owned by the app; closed with it.

    `keepalive`: seconds an idle connection is kept; `max_idle`: idle connections kept per
    origin (more are closed); `high_water`: body bytes an answer buffers before reading
    from its upstream pauses (it resumes at a quarter of that)."""

    def __init__(self, *, keepalive: float = 30.0, max_idle: int = 256,
                 high_water: int = 256 * 1024) -> None:
        for name, value in (("keepalive", keepalive), ("max_idle", max_idle),
                            ("high_water", high_water)):
            if not value > 0:
                raise ValueError(f"UpstreamPool: {name} must be > 0, not {value!r}")
        self.keepalive = keepalive
        self.max_idle = max_idle
        self.high_water = high_water
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

    async def _connect(self, origin: Origin, timeout: float) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        conn = Connection(loop, self, origin)
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
        head = request_head(method, target, headers, body)
        # bytes or None are sent with the head; anything else is an async iterable (an
        # isinstance check against the ABC costs more than the rest of this function).
        streamed = body is not None and not isinstance(body, bytes)
        retry = not streamed and method in IDEMPOTENT
        while True:
            conn = self._take(origin) or await self._connect(origin, timeout)
            response = UpstreamResponse(conn, method == "HEAD", self.high_water)
            conn.response = response
            sender: asyncio.Task[None] | None = None
            if streamed:
                conn.write(head)
                sender = asyncio.ensure_future(conn.send_body(
                    cast(AsyncIterable[bytes], body), chunked_upload(headers), timeout))
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
