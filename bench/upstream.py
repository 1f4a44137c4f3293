"""A Python upstream for what nginx cannot do cheaply: discard a streamed upload, generate a
download of any size, and hold idle WebSockets. Also answers every other GET with a small
fixed body (the fallback for the fast upstream when nginx is not installed).

    python -m bench.upstream --port 9200
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web

BODY = b"hello\n"
PIECE = memoryview(b"\0" * (1 << 20))


async def upload(request: web.Request) -> web.Response:
    """Read the whole body as it arrives and keep none of it."""
    received = 0
    async for chunk in request.content.iter_any():
        received += len(chunk)
    return web.json_response({"received": received})


async def download(request: web.Request) -> web.StreamResponse:
    size = int(request.match_info["size"])
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = size
    await resp.prepare(request)
    left = size
    while left > 0:
        n = min(left, len(PIECE))
        await resp.write(PIECE[:n])
        left -= n
    await resp.write_eof()
    return resp


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def fixed(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="text/plain")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/upload", upload)
    app.router.add_get("/download/{size:\\d+}", download)
    app.router.add_get("/ws", websocket)
    app.router.add_route("*", "/{tail:.*}", fixed)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
