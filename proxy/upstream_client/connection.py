"""One keep-alive connection to an upstream origin: the asyncio protocol that feeds the
current answer, and the request body's writes with back-pressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, cast

from .errors import BrokenAnswer, ClientStalled, expire
from .wire import LAST_CHUNK, chunk

if TYPE_CHECKING:
    from .pool import UpstreamPool
    from .response import UpstreamResponse

Origin = tuple[str, str, int]  # (scheme, host, port)


class Connection(asyncio.Protocol):
    """Made by the pool, which sets `response` for each exchange, `reused` when it comes
    from the idle list and `idle_since` when it goes back there."""

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
        if not self.closed:
            self.closed = True
            self.pool.gone(self.origin)
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
        timer = self.loop.call_later(timeout, expire, drain)
        try:
            await drain
        finally:
            timer.cancel()
            self._drain = None

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def send_body(self, body: AsyncIterable[bytes], length: int | None,
                        timeout: float) -> None:
        """Stream a request body after its head: `length` bytes raw, or (length None) as
        chunks and the last chunk. Each write waits while the upstream is not reading, at
        most `timeout`; so does each read from the client: one that drips its upload
        slower than that is cut (ClientStalled) rather than holding the connection."""
        chunked = length is None
        sent = 0
        source = aiter(body)
        while True:
            try:
                async with asyncio.timeout(timeout):
                    data = await anext(source)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ClientStalled("the client stopped sending its request body") from None
            if not data:
                continue  # an empty chunk would end a chunked body early
            sent += len(data)
            self.write(chunk(data) if chunked else data)
            await self.drain(timeout)
        if chunked:
            self.write(LAST_CHUNK)
        elif sent != length:  # the upstream would read the next request as this body
            raise BrokenAnswer("the request body did not match its length")

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
            self.pool.gone(self.origin)
            if self.transport is not None:
                self.transport.abort()
