"""WebSocket messages are bounded both ways (issue 16 item 7): a message past the cap closes
the relay with 1009 instead of growing the proxy by its size."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.upstream import WS_MAX_MESSAGE
from tests.attacks.harness import tally
from tests.conftest import Stack, StackFactory

TOO_BIG = 1009
SIZE = WS_MAX_MESSAGE - 64


@pytest.fixture
async def ws_upstream() -> AsyncIterator[tuple[str, list[int]]]:
    """/echo echoes; /flood sends one message past the cap. `got` records sizes received."""
    got: list[int] = []

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                got.append(len(message.data))
                await ws.send_bytes(message.data)
        return ws

    async def flood(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"y" * (WS_MAX_MESSAGE + 1))
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/flood", flood)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), got
    await server.close()


async def relay(make_stack: StackFactory, upstream: str) -> Stack:
    stack = await make_stack({"upstreams": [{"path": "/", "url": upstream}]})
    await stack.login(path="/plain-page")
    return stack


def ws_url(stack: Stack, path: str) -> str:
    return stack.url.replace("http", "ws", 1) + path


async def test_a_message_under_the_cap_passes(ws_upstream: tuple[str, list[int]],
                                              make_stack: StackFactory) -> None:
    stack = await relay(make_stack, ws_upstream[0])
    async with stack.client.ws_connect(ws_url(stack, "/echo"), max_msg_size=0) as ws:
        await ws.send_bytes(b"x" * (SIZE))
        assert len(await ws.receive_bytes(timeout=10)) == SIZE


def frame_head(opcode: int, size: int, fin: bool, mask: bytes) -> bytes:
    """A masked client frame's header (RFC 6455 5.2); opcode 0 continues a message."""
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        return head + bytes([0x80 | size]) + mask
    if size < 65536:
        return head + bytes([0x80 | 126]) + struct.pack("!H", size) + mask
    return head + bytes([0x80 | 127]) + struct.pack("!Q", size) + mask


ZERO_MASK = bytes(4)  # a zero mask leaves the payload as it is: no need to mask 16 MiB here


async def open_raw_websocket(stack: Stack) -> tuple[asyncio.StreamReader,
                                                     asyncio.StreamWriter]:
    port = int(stack.url.rsplit(":", 1)[1])
    cookies = "; ".join(f"{c.key}={c.value}" for c in stack.client.cookie_jar)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\nCookie: {cookies}\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def close_code(reader: asyncio.StreamReader, wait: float) -> int | None:
    """The code of the close frame the proxy sent, if one came within `wait` seconds."""
    try:
        answer = await asyncio.wait_for(reader.readexactly(4), wait)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return None
    if answer[:2] == b"\x88\x02" or answer[:1] == b"\x88":  # FIN + close, then the code
        code: int = struct.unpack("!H", answer[2:4])[0]
        return code
    return None


@pytest.mark.parametrize("shape", ["one frame", "endless continuation frames"])
async def test_a_client_message_past_the_cap_is_cut_with_1009(
        ws_upstream: tuple[str, list[int]], make_stack: StackFactory, shape: str) -> None:
    """The proxy counts the message, not the frame, and stops reading it at the cap: it
    closes (1009) long before 4x the cap has been sent, so its memory stays bounded."""
    stack = await relay(make_stack, ws_upstream[0])
    reader, writer = await open_raw_websocket(stack)
    piece = bytes(65536)
    sent, code = 0, None
    try:
        if shape == "one frame":  # a frame that declares 64 GiB, then starts sending them
            writer.write(frame_head(0x2, 1 << 36, fin=True, mask=ZERO_MASK))
        else:
            writer.write(frame_head(0x2, len(piece), fin=False, mask=ZERO_MASK) + piece)
        while sent < 4 * WS_MAX_MESSAGE:
            if shape == "one frame":
                writer.write(piece)
            else:
                writer.write(frame_head(0x0, len(piece), fin=False, mask=ZERO_MASK) + piece)
            sent += len(piece)
            await writer.drain()
            if (code := await close_code(reader, 0.001)) is not None:
                break
    except ConnectionError:
        pass
    if code is None:
        code = await close_code(reader, 5)
    writer.close()
    tally("websocket-size", refused=code == TOO_BIG, crashed=False)
    assert code == TOO_BIG and sent <= 2 * WS_MAX_MESSAGE
    assert ws_upstream[1] == []  # nothing of it reached the upstream


async def test_an_upstream_message_past_the_cap_is_closed_with_1009(
        ws_upstream: tuple[str, list[int]], make_stack: StackFactory) -> None:
    stack = await relay(make_stack, ws_upstream[0])
    async with stack.client.ws_connect(ws_url(stack, "/flood"), max_msg_size=0) as ws:
        message = await ws.receive(timeout=10)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == TOO_BIG
        tally("websocket-size", refused=True, crashed=False)
    await asyncio.sleep(0)
