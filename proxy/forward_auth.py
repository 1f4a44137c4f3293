"""/oauth2/auth: the yes/no answer for nginx auth_request, Traefik forwardAuth, Caddy forward_auth.

The original request's URI and host come from X-Forwarded-Uri / X-Original-URL and
X-Forwarded-Host only when the caller is a trusted proxy; from anyone else they are
ignored, so a spoofed `X-Forwarded-Uri: /healthz` opens nothing.
"""

from __future__ import annotations

import logging

from aiohttp import web
from multidict import CIMultiDict, MultiMapping
from yarl import URL

from .admission import admit
from .authorize import Policy
from .config import AccessPolicyConfig
from .errors import AccessDenied, BadRequest, Unauthenticated
from .headers import peer_trusted
from .pages import NO_STORE
from .request_target import resolve
from .routes import Route
from .state import EXCHANGE, REQUEST_ID, State

log = logging.getLogger("proxy.auth")


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


def ingress_policy(query: MultiMapping[str]) -> Policy | None:
    """What an ingress asks for one location, as oauth2-proxy reads it:
    `/oauth2/auth?allowed_groups=a,b&allowed_emails=x@y` (repeatable, comma-separated).
    Email rules take only a verified email (authorize.Policy), as the route's do."""
    def values(name: str) -> tuple[str, ...]:
        return tuple(v.strip() for item in query.getall(name, []) for v in item.split(",")
                     if v.strip())

    groups, emails = values("allowed_groups"), values("allowed_emails")
    if not groups and not emails:
        return None
    return Policy.from_config(AccessPolicyConfig(emails=emails, groups=groups))


async def check(request: web.Request) -> web.Response:
    exchange = request[EXCHANGE]
    state = exchange.state
    host, raw_path = original_request(request, state)
    route: Route | None = None
    refused: BadRequest | None = None  # a path or host the gateway would refuse with 400
    try:
        route = resolve(state.routes, [host], raw_path, state.scheme)[0]
    except BadRequest as exc:
        refused = exc
    asked = ingress_policy(request.query) if request.query_string else None
    if route is not None:
        exchange.route = route
        if route.pass_authorization and "Authorization" in request.headers:
            # The app trusts Authorization, and here the ingress, not the proxy, forwards
            # the request: with a yes, the client's own header (a token of its choosing, or
            # an [api] caller's token for the proxy) would reach it. Proxy mode drops it.
            log.warning("forward auth refused request_id=%s route=%s "
                        "reason=client-authorization", request[REQUEST_ID], route.name)
            raise AccessDenied("This app takes its Authorization header from the proxy "
                               "only: a request that carries its own is refused.")
        if route.is_public(raw_path) and asked is None:
            return web.Response(status=202, headers=NO_STORE)
    session = await admit(request, state, route, exchange=exchange)
    if refused is not None:  # 403, not 400, which nginx's auth_request turns into a 500
        raise AccessDenied(refused.public)
    if asked is not None:  # on top of the route's own policy (admit applied it), never instead
        decision = asked.decide(session.identity)
        if not decision.allowed:
            log.warning("access denied request_id=%s user=%s route=%s reason=%s (asked by "
                        "the ingress)", request[REQUEST_ID], session.identity.user,
                        route.name if route else "-", decision.reason)
            raise AccessDenied(f"You are signed in as {session.identity.user}, but "
                               f"{decision.reason}.")
    # oauth2-proxy's X-Auth-Request-* answer, built once per identity (upstream_identity.py)
    headers: CIMultiDict[str] = CIMultiDict(state.upstream_identity.auth_answer(session.identity))
    headers.extend(NO_STORE)
    # The same identity headers a forwarded request gets. Entra's tokens and the assertion
    # only go to a trusted forward-auth peer: anyone else may be a browser, where any
    # script of the app could read them from this answer. Each header on one line: an
    # ingress copies one value, so a list split over lines would reach the app cut short.
    trusted = peer_trusted(request.remote, state.trusted)
    state.upstream_identity.add(headers, session,
                                route.audience if route and trusted else None,
                                tokens_too=trusted, one_line=True)
    return web.Response(status=202, headers=headers)
