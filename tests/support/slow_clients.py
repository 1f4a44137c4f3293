"""Raw-socket clients that are slow on purpose (slowloris), for the attack and process tests
of the proxy's header timeout, keep-alive timeout and connection cap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from tests.attacks.harness import parse_responses

HOST = "127.0.0.1"
SLACK = 10.0  # generous: two loaded cores; a missing timeout holds them for 75 s or more
HEAD = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: never complete

Behaviour = Callable[[asyncio.StreamWriter], Coroutine[Any, Any, None]]


async def send_nothing(writer: asyncio.StreamWriter) -> None:
    return None


async def send_half_a_head(writer: asyncio.StreamWriter) -> None:
    writer.write(HEAD)
    await writer.drain()


async def drip(writer: asyncio.StreamWriter) -> None:
    """One byte every 0.2 s, for longer than any bound below, until the proxy hangs up."""
    data = HEAD + b"X-Pad: " + b"a" * 1000
    for i in range(len(data)):
        writer.write(data[i:i + 1])
        await writer.drain()
        await asyncio.sleep(0.2)


BEHAVIOURS: dict[str, Behaviour] = {"nothing": send_nothing, "half-head": send_half_a_head,
                                     "drip": drip}


async def held(port: int, behave: Behaviour, within: float) -> tuple[float | None, bytes]:
    """Connect, behave, and read until the proxy closes: (seconds it took or None if still
    open after `within`, what the proxy sent)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.monotonic()
    sender = asyncio.create_task(behave(writer))
    received = b""
    closed_after: float | None = None
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                received += chunk
        closed_after = time.monotonic() - started
    except ConnectionError:
        closed_after = time.monotonic() - started
    except TimeoutError:
        pass
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    return closed_after, received


async def read_response(reader: asyncio.StreamReader) -> int:
    """The status of the next whole response on a kept-alive connection."""
    data = b""
    while not (responses := parse_responses(data)[0]):
        chunk = await asyncio.wait_for(reader.read(65536), SLACK)
        assert chunk, f"closed mid-response: {data[:200]!r}"
        data += chunk
    return responses[0].status


async def open_served(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection that was served one request: certainly counted, now idle."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(HEAD + b"\r\n")
    assert await read_response(reader) == 200
    return reader, writer
