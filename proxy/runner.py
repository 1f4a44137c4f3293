"""The aiohttp runner the proxy serves with: aiohttp's, except for one answer.

aiohttp answers a request it cannot parse (a header line past `max_field_size`, a broken
request line) itself, before any middleware, with the parser's message as the body, and
that message quotes the first 100 bytes of the offending line: for an oversized Cookie
header, the session cookie. aiohttp has no setting for that text, so the runner's request
handler replaces it with the status and the kind of error alone.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest


class QuietRequestHandler(RequestHandler):
    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status < 500 and message:  # a parser error: its message quotes request bytes
            message = (f"{status} {HTTPStatus(status).phrase}: the request could not be "
                       f"read ({type(exc).__name__ if exc else 'malformed'}).")
        return super().handle_error(request, status, exc, message)


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class ProxyRunner(web.AppRunner):
    """web.AppRunner whose connections answer unparseable requests without echoing them."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds its Server (aiohttp offers no factory hook); only the class that
        # makes each connection's handler changes.
        server.__class__ = _QuietServer
        return server
