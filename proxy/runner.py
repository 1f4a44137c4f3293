"""The aiohttp runner the proxy serves with: aiohttp's, plus the connection rules it lacks.

* Quiet parser errors. aiohttp answers a request it cannot parse (a header line past
  `max_field_size`, a broken request line) itself, before any middleware, with the parser's
  message as the body, and that message quotes the first 100 bytes of the offending line:
  for an oversized Cookie header, the session cookie. aiohttp has no setting for that text,
  so the runner's request handler replaces it with the status and the kind of error alone.
* A header timeout (slowloris). aiohttp closes an idle keep-alive connection after
  `keepalive_timeout`, but a connection whose first request head never completes (nothing
  sent, half a head, a byte a second) is held for as long: the handler arms one timer per
  connection (none per request or chunk) and answers 408 and closes if the first head is
  not in when it fires.
* A connection cap per process. Past `max_connections` open connections, a new one is
  answered 503 and closed at once, and a WARNING is logged once until the count drops.
* A TLS handshake timeout. Under TLS the handler first hears of a connection once its
  handshake is done, so neither the header timer nor the cap covers the handshake:
  `ProxySite` gives it `header_timeout` too (asyncio's default is 60 s).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger("proxy")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 0.0  # seconds for the first request head; 0: no timer
    max_connections: int = 0  # open client connections per process; 0: no cap


CONNECTION_LIMITS = web.AppKey("connection_limits", ConnectionLimits)


def _answer(status: HTTPStatus, text: str, request_id: str, *extra: str) -> bytes:
    """A whole response written straight to the transport: no request object exists yet."""
    body = f"{status.value} {status.phrase}: {text}\nRequest ID: {request_id}\n".encode()
    head = [f"HTTP/1.1 {status.value} {status.phrase}", "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}", "Connection: close",
            f"X-Request-Id: {request_id}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class ConnectionGate:
    """One process's count of open client connections against the cap (owned by its server)."""

    __slots__ = ("limits", "open", "warned")

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self.warned = False

    def admit(self) -> bool:
        cap = self.limits.max_connections
        if cap and self.open >= cap:
            if not self.warned:  # once per episode: a flood must not become a log flood
                self.warned = True
                log.warning("connection cap reached: %d client connections are open "
                            "(server.max_connections); refusing new ones with 503 until "
                            "some close", self.open)
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1
        if self.warned and self.open < self.limits.max_connections:
            self.warned = False
            log.info("connection cap: below %d open connections again, accepting",
                     self.limits.max_connections)


class QuietRequestHandler(RequestHandler):
    __slots__ = ("_gate", "_admitted", "_head_timer")

    def __init__(self, manager: web.Server, *, gate: ConnectionGate,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._gate = gate
        self._admitted = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._gate.admit():
            # Before aiohttp sees it: no request task, no keep-alive timer, not counted.
            cast(asyncio.Transport, transport).write(_answer(
                HTTPStatus.SERVICE_UNAVAILABLE, "the proxy has too many open connections; "
                "try again shortly.", secrets.token_hex(16), "Retry-After: 1"))
            transport.close()
            return
        self._admitted = True
        super().connection_made(transport)
        timeout = self._gate.limits.header_timeout
        if timeout > 0:
            self._head_timer = self._loop.call_later(timeout, self._head_timed_out)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return  # refused in connection_made: aiohttp never knew it
        self._admitted = False
        self._gate.release()
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        # The parser counts every complete head (or parse error) it hands on; from the first,
        # aiohttp's keep-alive timer bounds the connection. Checked here rather than by
        # cancelling the timer in data_received: the hot path stays aiohttp's own.
        if transport is None or self._force_close or self._request_count:
            return
        # Nothing has been answered on this connection yet, so a 408 can be (RFC 9110).
        request_id = secrets.token_hex(16)
        timeout = self._gate.limits.header_timeout
        transport.write(_answer(
            HTTPStatus.REQUEST_TIMEOUT,
            f"the request head did not arrive within {timeout:g} s.", request_id))
        peer = transport.get_extra_info("peername")
        log.info("header timeout: closed a connection from %s whose request head did not "
                 "arrive within %gs (408) request_id=%s",
                 peer[0] if isinstance(peer, tuple) else "?", timeout, request_id)
        self.force_close()  # the transport sends the 408 before it closes

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status < 500 and message:  # a parser error: its message quotes request bytes
            message = (f"{status} {HTTPStatus(status).phrase}: the request could not be "
                       f"read ({type(exc).__name__ if exc else 'malformed'}).")
        return super().handle_error(request, status, exc, message)


class _QuietServer(web.Server):
    gate: ConnectionGate

    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, gate=self.gate, loop=self._loop, **self._kwargs)


class ProxyRunner(web.AppRunner):
    """web.AppRunner whose connections answer unparseable requests without echoing them,
    time out request heads and count against the app's CONNECTION_LIMITS (if it has them)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds its Server (aiohttp offers no factory hook); only the class that
        # makes each connection's handler changes, and the server owns the count.
        server.__class__ = _QuietServer
        quiet = cast(_QuietServer, server)
        quiet.gate = ConnectionGate(self.app.get(CONNECTION_LIMITS, ConnectionLimits()))
        return quiet


class ProxySite(web.TCPSite):
    """web.TCPSite whose TLS handshakes must complete within `handshake_timeout` seconds."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, *,
                 handshake_timeout: float, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.handshake_timeout = handshake_timeout

    async def start(self) -> None:
        if self._ssl_context is None:
            await super().start()
            return
        # TCPSite.start with one more argument (aiohttp passes none for the handshake).
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
            ssl_handshake_timeout=self.handshake_timeout)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
