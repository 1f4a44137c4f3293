"""The request path for everything the proxy forwards: route → session → authorize → forward."""

from __future__ import annotations

import logging

from aiohttp import web

from .errors import AccessDenied, NotFound, Unauthenticated
from .headers import identity_headers, peer_trusted, upstream_headers
from .login import begin_login
from .pages import is_navigation
from .routes import normalize_path
from .state import REQUEST_ID, ROUTE, STATE, USER
from .upstream import forward

log = logging.getLogger("proxy.auth")


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    route = state.routes.match(request.host, normalize_path(request.raw_path))
    if route is None:
        raise NotFound("No application is configured at this address.")
    request[ROUTE] = route
    trusted = peer_trusted(request.remote, state.trusted)
    headers = upstream_headers(
        request.headers, owned=state.owned_headers, cookie_prefix=state.sessions.name,
        peer=request.remote, peer_is_trusted=trusted,
        scheme=state.config.server.origin.scheme, request_id=request[REQUEST_ID])
    if route.is_public(request.raw_path):
        return await forward(request, route, headers, state.upstream_http)
    identity = state.sessions.load(request.cookies)
    if identity is None:
        if is_navigation(request):
            return await begin_login(request, request.raw_path)
        raise Unauthenticated("Sign in first: this request carries no valid session.")
    request[USER] = identity.user
    decision = route.policy.decide(identity)
    if not decision.allowed:
        log.warning("access denied request_id=%s user=%s route=%s reason=%s",
                    request[REQUEST_ID], identity.user, route.name, decision.reason)
        raise AccessDenied(f"You are signed in as {identity.user}, but {decision.reason}.")
    headers.extend(identity_headers(identity, state.config.identity.headers))
    return await forward(request, route, headers, state.upstream_http)
