"""Shared pieces of the attack suites: a recording upstream, raw HTTP/1.1 over a socket, and
the tally of attacks tried, refused and crashed that the terminal summary prints."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

# --- the upstream ----------------------------------------------------------------------------


@dataclass
class Arrival:
    """One request as the upstream received it."""

    method: str
    path: str  # raw path and query
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        """Values of every header whose name is `name` in any case or with `_` for `-`."""
        want = canonical(name)
        return [v for k, v in self.headers if canonical(k) == want]

    def names(self) -> set[str]:
        return {canonical(k) for k, _ in self.headers}


@dataclass
class Upstream:
    """A real upstream that records every request and answers with what it saw."""

    url: str
    seen: list[Arrival] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [a.path for a in self.seen]

    def identified_since(self, count: int) -> bool:
        """Whether a request after the first `count` carried a user's identity (the default
        identity headers or the signed assertion)."""
        return any(a.values("X-Forwarded-User") or a.values("X-Auth-Assertion")
                   for a in self.seen[count:])


def canonical(name: str) -> str:
    """How CGI/WSGI-style frameworks key a header: case-folded, `_` and `-` the same."""
    return name.strip().lower().replace("_", "-")


async def start_upstream() -> tuple[Upstream, TestServer]:
    upstream = Upstream("")

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        arrival = Arrival(request.method, request.raw_path, list(request.headers.items()), body)
        upstream.seen.append(arrival)
        return web.json_response({"path": arrival.path, "headers": arrival.headers,
                                  "body_size": len(body)})

    # Limits as large as the proxy's, so what the proxy forwards is never refused here.
    app = web.Application(client_max_size=1024**3,
                          handler_args={"max_field_size": 64 * 1024,
                                        "max_line_size": 64 * 1024})
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)
    upstream.url = str(server.make_url("")).rstrip("/")
    return upstream, server


# --- raw HTTP/1.1 ----------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")


@dataclass
class RawExchange:
    responses: list[RawResponse]
    closed: bool  # the proxy closed the connection (EOF or reset) before the timeout
    leftover: bytes  # bytes after the last complete response (should be none)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")


def parse_responses(data: bytes) -> tuple[list[RawResponse], bytes]:
    """Split a byte stream into HTTP/1.x responses (Content-Length or chunked bodies)."""
    responses: list[RawResponse] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        match = _STATUS.match(head)
        if not sep or not match:
            break
        lines = head.split(b"\r\n")[1:]
        headers = [(k.strip().decode("latin-1"), v.strip().decode("latin-1"))
                   for k, _, v in (line.partition(b":") for line in lines)]
        lowered = {k.lower(): v for k, v in headers}
        if lowered.get("transfer-encoding", "").lower() == "chunked":
            body, rest, complete = _dechunk(rest)
            if not complete:
                break
        else:
            length = int(lowered.get("content-length", "0") or 0)
            if len(rest) < length:
                break
            body, rest = rest[:length], rest[length:]
        responses.append(RawResponse(int(match.group(1)), headers, body))
        data = rest
    return responses, data


def _dechunk(data: bytes) -> tuple[bytes, bytes, bool]:
    body = b""
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return body, data, False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            _, sep, rest = rest.partition(b"\r\n")
            return body, rest, bool(sep)
        body, data = body + rest[:size], rest[size + 2:]


async def raw_exchange(port: int, data: bytes, timeout: float = 3.0) -> RawExchange:
    """Send `data` on a fresh connection; read until the proxy closes it or `timeout`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    closed = False
    try:
        writer.write(data)
        await writer.drain()
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                closed = True
                break
            received += chunk
    except TimeoutError:
        pass
    except ConnectionError:
        closed = True
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass
    responses, leftover = parse_responses(received)
    return RawExchange(responses, closed, leftover)


# --- crashes ---------------------------------------------------------------------------------


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """Log records that carry a traceback or report an unhandled error."""
    found = []
    for record in records:
        message = record.getMessage()
        if record.exc_info or record.exc_text or "Traceback" in message \
                or "unhandled error" in message:
            found.append(f"{record.name} {record.levelname} {message[:200]}")
    return found


# --- the tally -------------------------------------------------------------------------------

TALLY: dict[str, Counter[str]] = {}
TOUCHED: list[str] = []  # families tallied by the running test


def tally(family: str, *, refused: bool, crashed: bool, reached: bool = False) -> None:
    """One attack: refused as it must be, or not; `crashed` means a 5xx (or no answer);
    `reached` means what it was after (a request, a token, an identity) got to the upstream
    or the browser all the same."""
    counts = TALLY.setdefault(family, Counter())
    counts["tried"] += 1
    counts["refused"] += refused
    counts["5xx"] += crashed
    counts["reached"] += reached
    if family not in TOUCHED:
        TOUCHED.append(family)


def tally_tracebacks(count: int) -> None:
    """Tracebacks the running test's attacks left in the log (counted against its family)."""
    if TOUCHED and count:
        TALLY[TOUCHED[0]]["traceback"] += count


def summary_lines() -> list[str]:
    width = max((len(f) for f in TALLY), default=10)
    lines = [f"{'family':<{width}}  tried  refused  5xx  tracebacks logged  "
             "reached upstream or browser"]
    for family in sorted(TALLY):
        c = TALLY[family]
        lines.append(f"{family:<{width}}  {c['tried']:>5}  {c['refused']:>7}  {c['5xx']:>3}  "
                     f"{c['traceback']:>17}  {c['reached']:>27}")
    return lines
