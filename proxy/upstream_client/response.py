"""One answer from the upstream: llhttp's callback object, the parser state it keeps, and
the body handed out chunk by chunk with back-pressure on the connection."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

import httptools
from multidict import CIMultiDict

from .errors import BrokenAnswer, StaleConnection, UpstreamClientError, expire

if TYPE_CHECKING:
    from .connection import Connection


class UpstreamResponse:
    """One answer: status, reason and headers once received; the body read as it arrives.
    Also the parser's callback object. `release()` must be called when done with it.

    The connection feeds it (`feed`, `lost`); the pool waits for its head (`wait_head`) and
    tells it about a streamed request body (`watch_sender`)."""

    __slots__ = ("status", "reason", "headers", "content_length", "chunked", "_conn",
                 "_head", "_names", "_raw", "_headers_done", "_informational", "_complete",
                 "_keep_alive", "_reusable", "_until_eof", "_chunks", "_buffered", "_error",
                 "_waiter", "_received", "_parser", "_sender", "_high_water", "_caps",
                 "_head_bytes", "_field_bytes")

    def __init__(self, conn: Connection, head: bool, high_water: int,
                 caps: tuple[int, int, int, int, int]) -> None:
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.content_length: int | None = None
        self.chunked = False
        self._conn = conn
        self._head = head
        self._high_water = high_water  # buffered body bytes before reading pauses
        # (head bytes, header lines, reason bytes, one field's name and value, the least of
        # the first and fourth): past any, the answer is refused. One tuple from the pool.
        self._caps = caps
        # Bytes fed until the final head was whole (1xx and the piece parsed included);
        # bytes of the head's fields (1xx answers' too), counted once a head is whole.
        self._head_bytes = 0
        self._field_bytes = 0
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
            if len(self._names) > self._caps[2]:
                self._fail(BrokenAnswer("the upstream's reason phrase is too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only the lines are counted here, where the list grows (sizes: _head_fits, feed).
        if not self._complete:
            raw = self._raw
            raw.append((name, value))
            if len(raw) > self._caps[1]:
                self._refuse_head()  # keeps nothing more of an answer refused anyway

    def _head_fits(self) -> bool:
        """The head's fields within the caps (1xx answers' counted too); refused if not."""
        if self._head_bytes <= self._caps[4]:
            # No field, nor all, is longer than the bytes fed: nothing to count.
            self._field_bytes = self._head_bytes
            return True
        size = self._field_bytes
        longest = self._caps[3]
        for name, value in self._raw:  # a plain loop: sum() and max() cost 3x (callgrind)
            field = len(name) + len(value)
            if field > longest:
                return self._refuse_head()
            size += field + 4  # ": " and CRLF
        self._field_bytes = size
        return size <= self._caps[0] or self._refuse_head()

    def _refuse_head(self) -> bool:
        self._raw.clear()
        self._fail(BrokenAnswer("the upstream's answer head is too large"))
        return False

    def on_headers_complete(self) -> None:
        if self._complete or self._error is not None:
            return
        if not self._head_fits():
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._informational = True  # 100 Continue, 103 Early Hints: not forwarded
            self._raw.clear()
            self._names = b""
            return
        self.status = status
        self.reason = self._names.decode("latin-1")
        # How the body ends (RFC 9112 §6.3), decided here (a call cost 0.2%, callgrind).
        headers = self.headers
        length = None
        coded = False
        for name, value in self._raw:
            # One rule for bytes that are not UTF-8: 502. aiohttp's writer encodes values as
            # UTF-8: they cannot reach the client unchanged (surrogateescape dropped them).
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                self._raw.clear()
                self._fail(BrokenAnswer("the upstream sent a header that is not UTF-8"))
                return
            headers.add(name.decode("latin-1"), text)
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(text)  # llhttp already refused a bad or repeated one
            elif lowered == b"transfer-encoding":
                coded = True  # chunked only if it is the last coding;
                self.chunked = text.rpartition(",")[2].strip().lower() == "chunked"
        if coded:  # any other coding: the body ends when the connection closes
            length = None
        self._raw.clear()
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
        if self._buffered > self._high_water:
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
        if self._error is not None:
            return  # a refused answer: drop what follows (the pool closes the connection)
        if not self._headers_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BrokenAnswer("the upstream switched protocols unasked"))
        except httptools.HttpParserError:
            if self._complete:
                # Bytes that are not HTTP right after a whole answer: the upstream may mean a
                # longer body, so it is refused where it still can be (as aiohttp), not reused.
                self._reusable = False
                if self._error is None:
                    self._error = BrokenAnswer("the upstream sent bytes after its answer")
                self._wake()
            else:
                self._fail(BrokenAnswer("the upstream's answer is not valid HTTP/1.1"))
        if not self._headers_done and self._head_bytes > self._caps[0]:
            # llhttp keeps a header it has not seen the end of: a head without end is cut.
            self._fail(BrokenAnswer("the upstream's answer head is too large"))

    def lost(self, reused: bool) -> None:
        if self._complete:
            return
        if self._headers_done and self._until_eof:
            self._keep_alive = False
            self._complete = True  # a body delimited by the connection closing has ended
        elif reused and not self._received:
            self._fail(StaleConnection("the pooled connection was closed"))
        else:
            self._fail(BrokenAnswer("the upstream closed the connection mid-answer"))
        self._wake()

    def watch_sender(self, sender: asyncio.Task[None]) -> None:
        """`sender` streams the request body. Until it is done the answer's clock does not
        start; if it fails (the client broke off) the exchange fails, and if it is cut
        short the connection is never reused."""
        self._sender = sender
        sender.add_done_callback(self._sender_done)

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._reusable = False
        elif isinstance(error := task.exception(), UpstreamClientError):
            self._fail(error)  # the upstream stopped reading it (timeout) or closed
        elif error is not None:
            self._fail(BrokenAnswer("the request body could not be sent"))
        self._wake()  # the answer's own clock may start now

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
        timer = loop.call_later(timeout, expire, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    # -- reading --------------------------------------------------------------------------
    async def wait_head(self, timeout: float) -> None:
        """Until status and headers are in; raises what went wrong before that."""
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
        if self._buffered <= self._high_water // 4:
            self._conn.resume_reading()
        return chunk

    async def read(self, timeout: float) -> bytes:
        """The whole body (for answers known to be small)."""
        if self._complete and self._error is None:  # all here: no coroutine per chunk
            body, self._buffered = b"".join(self._chunks), 0
            self._chunks.clear()
            self._conn.resume_reading()
            return body
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
