"""The outermost layer: request id, the proxy's cookies, errors as pages, one access-log line."""

from __future__ import annotations

import logging
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from .errors import BadRequest, ProxyError
from .headers import Network, peer_trusted
from .logs import fields
from .pages import error_response
from .session.cookies import CookieSpec
from .state import EXCHANGE, METRICS, REQUEST_ID, STATE, Exchange, StateCell, get_state

access_log = logging.getLogger("proxy.access")
log = logging.getLogger("proxy")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id(request: web.Request, cell: StateCell) -> str:
    incoming = request.headers.get("X-Request-Id", "")
    if (incoming and _REQUEST_ID.match(incoming)
            and peer_trusted(request.remote, cell.current.trusted)):
        return incoming
    return cell.new_request_id()


def apply_cookies(request: web.Request, response: web.StreamResponse,
                  specs: list[CookieSpec]) -> None:
    session = get_state(request).config.session
    for spec in specs:
        if spec.max_age is None:
            response.del_cookie(spec.name, path=spec.path, domain=session.cookie_domain or None,
                                secure=session.secure, httponly=True, samesite=session.samesite)
        else:
            response.set_cookie(spec.name, spec.value, max_age=spec.max_age, path=spec.path,
                                domain=session.cookie_domain or None, secure=session.secure,
                                httponly=True, samesite=session.samesite)


def _endpoint(request: web.Request) -> str:
    """A bounded label for the proxy's own endpoints (never the raw path)."""
    info = request.match_info.route.resource
    canonical = info.canonical if info is not None else ""
    return canonical if canonical.startswith(("/oauth2", "/callback", "/.auth", "/ping",
                                              "/ready")) else "-"


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str | None:
    """The real client: the peer, unless it is a trusted proxy; then the nearest address in
    X-Forwarded-For that is not one (what a trusted proxy appended), never a spoofable
    left-hand entry that an untrusted hop wrote."""
    peer = request.remote
    if not peer_trusted(peer, trusted):
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", ()) for h in v.split(",")]
    for hop in reversed(hops):
        if not hop:
            break
        if not peer_trusted(hop, trusted):
            return hop[:64]
        peer = hop
    return peer


def _bytes_sent(request: web.Request, response: web.StreamResponse | None) -> int:
    if response is None or request.method == "HEAD":
        return 0
    if response.prepared:  # streamed: what was written so far
        return response.body_length
    return (response.content_length or 0) if isinstance(response, web.Response) else 0


def _access(request: web.Request, exchange: Exchange, cell: StateCell,
            response: web.StreamResponse | None, status: int, elapsed: float) -> None:
    route = exchange.route
    upstream_time = exchange.upstream_time
    access_log.info("access", extra=fields(
        request_id=request[REQUEST_ID], method=request.method,
        host=exchange.authority or request.headers.get("Host", "")[:260],
        path=request.path[:512], status=status, duration_ms=round(elapsed * 1000, 1),
        bytes=_bytes_sent(request, response), user=exchange.user,
        tenant=exchange.tenant, client=client_address(request, cell.current.trusted),
        user_agent=request.headers.get("User-Agent", "")[:256] or None,
        route=route.name if route else None, upstream_status=exchange.upstream_status,
        upstream_ms=None if upstream_time is None else round(upstream_time * 1000, 1)))


@web.middleware
async def outer(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A middleware, not a wrapper around each route's handler (3% fewer instructions per
    # request): only a middleware also sees the requests no route matches, such as
    # "CONNECT host:443", and gives them a page with a request id like every other answer.
    started = time.monotonic()
    app = request.app
    cell = app[STATE]
    cell.inflight += 1
    request[REQUEST_ID] = _request_id(request, cell)
    request[EXCHANGE] = exchange = Exchange(cell.current)
    status = 500
    response: web.StreamResponse | None = None
    try:
        try:
            if not request.raw_path.startswith("/"):
                # absolute-form ("GET http://host/admin"): aiohttp routes on the URL's path
                # but raw_path keeps the URL, which an upstream would read as /admin after
                # the proxy chose a route for another path. Browsers never send it here.
                raise BadRequest("The request target must be a path, not a full URL.")
            response = await handler(request)
        except ProxyError as exc:
            response = error_response(request, exc)
        except web.HTTPException as exc:  # aiohttp's own 404/405 from the router
            response = error_response(request, ProxyError(exc.reason, status=str(exc.status)))
            response.set_status(exc.status)
        except Exception:
            log.exception("unhandled error request_id=%s", request[REQUEST_ID])
            response = error_response(request, ProxyError())
        status = response.status
        if not response.prepared:
            apply_cookies(request, response, exchange.cookies)
            response.headers.setdefault("X-Request-Id", request[REQUEST_ID])
            # Ours, or an upstream's that sent none: never aiohttp's default, which names
            # the Python and aiohttp versions. An upstream's own Server is left as it is.
            response.headers.setdefault("Server", cell.current.config.server.server_header)
        return response
    finally:
        cell.inflight -= 1
        route = exchange.route
        label = route.name if route else _endpoint(request)
        elapsed = time.monotonic() - started
        app[METRICS].observe(label, status, elapsed)
        if cell.current.config.server.access_log and access_log.isEnabledFor(logging.INFO):
            _access(request, exchange, cell, response, status, elapsed)
