"""Forward a request upstream: bodies streamed both ways, WebSockets, 502/504 mapping.

Plain HTTP goes through the lean pooled client (upstream_client.py); WebSockets through
aiohttp's client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from .errors import BadRequest, ClientTimeout, UpstreamBusy, UpstreamTimeout, UpstreamUnavailable
from .headers import response_headers
from .routes import Route
from .state import METRICS, STATE, Exchange, State
from .upstream_client import UpstreamClientError, UpstreamResponse

log = logging.getLogger("proxy.upstream")
SMALL_BODY = 64 * 1024
# Largest WebSocket message relayed either way: aiohttp assembles a message (all its
# fragments) in memory, so one unfinished message could grow the proxy without limit. Past
# this, the side that sent it is closed with 1009 (message too big), and so is the other.
WS_MAX_MESSAGE = 4 * 1024 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # checked first: cheaper than the header
_WS_HANDSHAKE = ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                 "sec-websocket-protocol", "sec-websocket-accept")


def new_client() -> aiohttp.ClientSession:
    """The WebSocket client: no cookie jar, no decompression, no added headers."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
    )


def target_url(route: Route, raw_path: str, websocket: bool = False) -> URL:
    base = route.base
    if websocket:
        base = "ws" + base[4:] if base.startswith("http") else base
    return URL(base + route.upstream_path(raw_path), encoded=True)


def is_websocket(request: web.BaseRequest) -> bool:
    return (request.headers.get("Upgrade", "").lower() == "websocket"
            and "upgrade" in request.headers.get("Connection", "").lower())


async def forward(request: web.Request, state: State, route: Route, exchange: Exchange,
                  headers: CIMultiDict[str]) -> web.StreamResponse:
    """`exchange`: the request's (the Host its route was chosen on; the upstream's status
    and time are recorded there for the access line)."""
    if not route.preserve_host:
        headers["Host"] = route.upstream.raw_authority
    elif authority := exchange.authority or request.host:
        headers["Host"] = authority  # normalized: the Host the route was chosen on
    if is_websocket(request):
        return await _websocket(request, route, exchange, headers, state.upstream_http)
    timeout = route.timeout
    started = time.monotonic()
    # Most requests have no body: no coroutine for them.
    body = await _request_body(request) if request.body_exists else _no_body(request)
    try:
        # The framing the upstream sees is the proxy's: for a streamed body, the length
        # aiohttp reads it by (the client's Content-Length header is not forwarded).
        upstream = await state.upstream_pool.request(
            request.method, route.origin, route.upstream_target(request.raw_path), headers,
            body, timeout,
            length=None if body is None or isinstance(body, bytes) else request.content_length,
            connect_timeout=route.connect_timeout, max_connections=route.max_connections,
            tls=route.tls, server_name=route.server_name)
    except UpstreamClientError as exc:
        _count(request, route, "unreachable" if exc.kind == "broken_body" else exc.kind)
        if exc.kind == "timeout":
            raise UpstreamTimeout(f"The app behind {route.name} did not answer in time.") \
                from None
        if exc.kind == "pool_full":
            raise UpstreamBusy(f"The app behind {route.name} is busy.") from None
        if exc.kind == "client_timeout":
            raise ClientTimeout("The request body stopped arriving.") from None
        raise UpstreamUnavailable(f"The app behind {route.name} is unreachable.") from None
    exchange.upstream_time = time.monotonic() - started  # to the response head
    exchange.upstream_status = upstream.status
    try:
        return await _answer(request, state, route, upstream, timeout)
    finally:
        upstream.release()


def _no_body(request: web.Request) -> bytes | None:
    """None, or b"" for an explicitly empty body (it keeps its "Content-Length: 0")."""
    return b"" if request.method in _BODY_METHODS and request.content_length == 0 else None


async def _request_body(request: web.Request) -> bytes | AsyncIterator[bytes]:
    """A body: small ones of known length whole (sent with the head in one write);
    anything else streamed as it arrives."""
    length = request.content_length
    if length is not None and length <= SMALL_BODY:
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError:
            raise BadRequest("The request body ended before its Content-Length.") from None
    return request.content.iter_any()


async def _answer(request: web.Request, state: State, route: Route, upstream: UpstreamResponse,
                  timeout: float) -> web.StreamResponse:
    length = upstream.content_length
    cookie_prefix = state.sessions.name
    if length is not None and length <= SMALL_BODY and request.method != "HEAD":
        # Most responses are small: one read and one write instead of a stream. Nothing
        # has reached the client yet, so a body that breaks off is still an honest 502.
        try:
            body = await upstream.read(timeout)
        except UpstreamClientError as exc:
            _count(request, route, exc.kind)
            if exc.kind == "timeout":
                raise UpstreamTimeout(f"The app behind {route.name} stopped answering.") \
                    from None
            raise UpstreamUnavailable(f"The app behind {route.name} broke off its "
                                      "answer.") from None
        return web.Response(status=upstream.status, reason=upstream.reason,
                            headers=response_headers(upstream.headers, cookie_prefix), body=body)
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                  headers=response_headers(upstream.headers, cookie_prefix))
    if length is not None:
        response.content_length = length
    _server_header(state, response)
    await response.prepare(request)
    try:
        while chunk := await upstream.read_chunk(timeout):
            await response.write(chunk)
    except UpstreamClientError as exc:
        # Headers are gone: the only honest signal left is a cut connection.
        log.warning("upstream %s broke off mid-body: %s", route.name, type(exc).__name__)
        _count(request, route, "broken_body")
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


def _server_header(state: State, response: web.StreamResponse) -> None:
    """Streamed answers are sent before the middleware sees them: the same rule here (the
    upstream's own Server kept, else ours, never aiohttp's versions)."""
    response.headers.setdefault("Server", state.config.server.server_header)


def _count(request: web.Request, route: Route, kind: str) -> None:
    request.app[METRICS].upstream_errors.labels(route.name, kind).inc()


async def _websocket(request: web.Request, route: Route, exchange: Exchange,
                     headers: CIMultiDict[str],
                     http: aiohttp.ClientSession) -> web.StreamResponse:
    for name in _WS_HANDSHAKE:
        headers.popall(name, None)
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                 if p.strip()]
    started = time.monotonic()
    try:
        async with asyncio.timeout(route.timeout):  # the handshake; the socket may idle after
            upstream = await http.ws_connect(
                target_url(route, request.raw_path, websocket=True), headers=headers,
                protocols=protocols, autoping=False, max_msg_size=WS_MAX_MESSAGE,
                ssl=route.tls if route.tls is not None else True,
                server_hostname=route.server_name,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=route.timeout))
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise UpstreamTimeout(f"The app behind {route.name} did not answer in time.") from None
    except aiohttp.ClientError:
        raise UpstreamUnavailable(f"The app behind {route.name} refused the WebSocket.") \
            from None
    exchange.upstream_time = time.monotonic() - started
    exchange.upstream_status = 101
    async with upstream:
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (),
            autoping=False, max_msg_size=WS_MAX_MESSAGE)
        _server_header(request.app[STATE].current, client)
        await client.prepare(request)
        request.app[STATE].websockets.add(client)
        pumps = [asyncio.create_task(_pump(client, upstream)),
                 asyncio.create_task(_pump(upstream, client))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        await client.close()
        return client


async def _pump(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type == WSMsgType.PONG:
            await sink.pong(message.data)
    await sink.close(code=source.close_code or 1000)
