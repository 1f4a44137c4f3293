"""/oauth2/auth: the yes/no answer for nginx auth_request, Traefik forwardAuth, Caddy forward_auth.

The original request's URI and host come from X-Forwarded-Uri / X-Original-URL and
X-Forwarded-Host only when the caller is a trusted proxy; from anyone else they are
ignored, so a spoofed `X-Forwarded-Uri: /healthz` opens nothing.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .admission import admit
from .errors import Unauthenticated
from .headers import clean_value, peer_trusted
from .identity import Identity
from .pages import NO_STORE
from .routes import Route, normalize_path
from .state import ROUTE, State, get_state


def original_request(request: web.Request, state: State) -> tuple[str, str]:
    """(host, raw path) of the request being checked."""
    if not peer_trusted(request.remote, state.trusted):
        return request.host, "/"
    # Front proxies set one of these and may pass the client's copies of the other along
    # (ingress-nginx sets X-Original-URL and forwards X-Forwarded-Uri untouched): two
    # different answers, or a repeated header, is ambiguous and refused, never guessed.
    uris = {_as_path(v) for name in ("X-Forwarded-Uri", "X-Original-URL")
            for v in request.headers.getall(name, [])}
    hosts = set(request.headers.getall("X-Forwarded-Host", []))
    if len(uris) > 1 or len(hosts) > 1 or any("," in h for h in hosts):
        # 401, not 400: nginx's auth_request turns any other status into a 500.
        raise Unauthenticated("The original request's URI or host is ambiguous.")
    return (hosts.pop().strip() if hosts else request.host), (uris.pop() if uris else "/")


def _as_path(uri: str) -> str:
    if uri.startswith("/"):
        return uri
    return URL(uri).raw_path_qs if "://" in uri else "/" + uri


def auth_request_headers(identity: Identity) -> dict[str, str]:
    """oauth2-proxy's answer headers, cleaned like forwarded identity headers: no control
    characters (CR/LF would make aiohttp fail the answer: nginx shows a 500), and groups
    joined unambiguously (identity.join_list)."""
    headers = {
        "X-Auth-Request-User": identity.user,
        "X-Auth-Request-Email": identity.email,
        "X-Auth-Request-Groups": identity.claim("groups"),
        "X-Auth-Request-Preferred-Username": identity.preferred_username,
    }
    return {k: clean for k, v in headers.items() if (clean := clean_value(v))}


async def check(request: web.Request) -> web.Response:
    state = get_state(request)
    host, raw_path = original_request(request, state)
    route: Route | None = state.routes.match(host, normalize_path(raw_path))
    if route is not None:
        request[ROUTE] = route
        if route.is_public(raw_path):
            return web.Response(status=202, headers=NO_STORE)
    session = await admit(request, state, route)
    headers: CIMultiDict[str] = CIMultiDict({**auth_request_headers(session.identity),
                                             **NO_STORE})
    # The same identity headers a forwarded request gets. Entra's tokens and the assertion
    # only go to a trusted forward-auth peer: anyone else may be a browser, where any
    # script of the app could read them from this answer.
    trusted = peer_trusted(request.remote, state.trusted)
    state.upstream_identity.add(headers, session,
                                route.audience if route and trusted else None,
                                tokens_too=trusted)
    return web.Response(status=202, headers=headers)
