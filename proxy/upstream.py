"""Forward a request upstream: bodies streamed both ways, WebSockets, 502/504 mapping."""

from __future__ import annotations

import asyncio
import functools
import logging

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from .errors import UpstreamTimeout, UpstreamUnavailable
from .headers import response_headers
from .routes import Route
from .state import METRICS, STATE

log = logging.getLogger("proxy.upstream")
CHUNK = 64 * 1024
SMALL_BODY = 64 * 1024
_WS_HANDSHAKE = ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                 "sec-websocket-protocol", "sec-websocket-accept")


def new_client() -> aiohttp.ClientSession:
    """One pooled client for all upstreams: no cookie jar, no decompression, no added headers."""
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


@functools.lru_cache(maxsize=64)
def _timeouts(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)


def is_websocket(request: web.BaseRequest) -> bool:
    return (request.headers.get("Upgrade", "").lower() == "websocket"
            and "upgrade" in request.headers.get("Connection", "").lower())


async def forward(request: web.Request, route: Route, headers: CIMultiDict[str],
                  http: aiohttp.ClientSession) -> web.StreamResponse:
    if not route.preserve_host:
        headers["Host"] = route.upstream.raw_authority
    elif request.host:
        headers["Host"] = request.host
    if is_websocket(request):
        return await _websocket(request, route, headers, http)
    timeout = _timeouts(route.timeout)
    data = request.content if request.body_exists else None
    try:
        upstream = await http.request(
            request.method, target_url(route, request.raw_path), headers=headers, data=data,
            allow_redirects=False, timeout=timeout, compress=None, chunked=None)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        _count(request, route, "timeout")
        raise UpstreamTimeout(f"The app behind {route.name} did not answer in time.") from None
    except aiohttp.ClientError:
        _count(request, route, "unreachable")
        raise UpstreamUnavailable(f"The app behind {route.name} is unreachable.") from None
    async with upstream:
        length = upstream.content_length
        if (length is not None and length <= SMALL_BODY and request.method != "HEAD"
                and "Transfer-Encoding" not in upstream.headers):
            # Most responses are small: one read and one write instead of a stream. Nothing
            # has reached the client yet, so a body that breaks off is still an honest 502.
            try:
                body = await upstream.read()
            except (TimeoutError, aiohttp.ServerTimeoutError):
                _count(request, route, "timeout")
                raise UpstreamTimeout(f"The app behind {route.name} stopped answering.") \
                    from None
            except aiohttp.ClientError:
                _count(request, route, "broken_body")
                raise UpstreamUnavailable(f"The app behind {route.name} broke off its "
                                          "answer.") from None
            return web.Response(status=upstream.status, reason=upstream.reason,
                                headers=response_headers(upstream.headers), body=body)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=response_headers(upstream.headers))
        if length is not None and "Transfer-Encoding" not in upstream.headers:
            response.content_length = length
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Headers are gone: the only honest signal left is a cut connection.
            log.warning("upstream %s broke off mid-body: %s", route.name, type(exc).__name__)
            _count(request, route, "broken_body")
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response


def _count(request: web.Request, route: Route, kind: str) -> None:
    request.app[METRICS].upstream_errors.labels(route.name, kind).inc()


async def _websocket(request: web.Request, route: Route, headers: CIMultiDict[str],
                     http: aiohttp.ClientSession) -> web.StreamResponse:
    for name in _WS_HANDSHAKE:
        headers.popall(name, None)
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                 if p.strip()]
    try:
        async with asyncio.timeout(route.timeout):  # the handshake; the socket may idle after
            upstream = await http.ws_connect(
                target_url(route, request.raw_path, websocket=True), headers=headers,
                protocols=protocols, autoping=False, max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=route.timeout))
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise UpstreamTimeout(f"The app behind {route.name} did not answer in time.") from None
    except aiohttp.ClientError:
        raise UpstreamUnavailable(f"The app behind {route.name} refused the WebSocket.") \
            from None
    async with upstream:
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (),
            autoping=False, max_msg_size=0)
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
