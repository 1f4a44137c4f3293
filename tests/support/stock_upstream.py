"""An aiohttp upstream at its stock limits (8,190 bytes per header line, 128 fields), as an
app behind the proxy runs by default; it answers with what it read, line by line."""

from __future__ import annotations

from aiohttp import web


async def reflect(request: web.Request) -> web.Response:
    return web.json_response({
        # How an aiohttp app reads a list header sent over repeated lines.
        "groups": request.headers.getall("X-Forwarded-Groups", []),
        "lines": [[name.decode("latin-1"), value.decode("latin-1")]
                  for name, value in request.raw_headers],
    })


def create_app() -> web.Application:
    app = web.Application()  # no handler_args: the defaults every aiohttp app starts with
    app.router.add_route("*", "/{tail:.*}", reflect)
    return app
