"""A real upstream for tests: reflects what it received (as oauth2-proxy's test upstream)."""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import WSMsgType, web

CHUNK = b"x" * 65536


async def reflect(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name, []).append(value)
    return web.json_response({
        "method": request.method, "path": request.path, "raw_path": request.raw_path,
        "headers": headers, "body_size": size, "body_sha256": digest.hexdigest(),
    })


async def download(request: web.Request) -> web.StreamResponse:
    size = int(request.match_info["size"])
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    sent = 0 if request.method != "HEAD" else size
    while sent < size:
        piece = CHUNK[: min(len(CHUNK), size - sent)]
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "5")))
    return web.Response(text="late")


async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for i in range(3):
        await response.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(0.2)
    await response.write_eof()
    return response


async def echo_ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("chat",))
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str("echo:" + message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


def create_app() -> web.Application:
    # Large limits: a user in 250 groups sends a 9 KB X-Forwarded-Groups header.
    app = web.Application(client_max_size=1024**4,
                          handler_args={"max_field_size": 64 * 1024})
    app.router.add_get("/download/{size:\\d+}", download)
    app.router.add_get("/slow", slow)
    app.router.add_get("/events", events)
    app.router.add_get("/ws", echo_ws)
    app.router.add_route("*", "/{tail:.*}", reflect)
    return app
