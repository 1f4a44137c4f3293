"""The request path for everything the proxy forwards: route → session → authorize → forward."""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from .errors import AccessDenied, NotFound, Unauthenticated
from .headers import own_cookies, peer_trusted, upstream_headers
from .identity import Identity
from .login import begin_login, redirect
from .oidc.bearer import bearer_token, identity_claims
from .oidc.graph import has_overage
from .pages import is_navigation, sign_in_page
from .refresh import ensure_fresh
from .request_target import forwarded_host, route_request
from .routes import Route
from .session.store import Session
from .state import COOKIES, REQUEST_ID, ROUTE, USER, State, get_state, session_cookies
from .upstream import forward

log = logging.getLogger("proxy.auth")


async def current_session(request: web.Request, state: State) -> Session | None:
    """The request's session with fresh tokens; None when there is none (or it just ended)."""
    sessions = state.sessions
    session = await sessions.load(own_cookies(request.headers, sessions.name))
    if session is None or not sessions.server_side:
        return session
    fresh = await ensure_fresh(session, state.sessions, state.entra,
                               state.config.session.refresh, state.extra_claims)
    if fresh is None:
        request[COOKIES].extend(await state.sessions.clear(session_cookies(request)))
    return fresh


async def authenticate(request: web.Request, state: State,
                       route: Route | None) -> Session | None:
    """Who is asking: an API bearer token ([api]) first, else the session cookie."""
    if state.config.api.accept_bearer:
        session = await bearer_session(request, state, route)
        if session is not None:
            return session
    return await current_session(request, state)


async def bearer_session(request: web.Request, state: State,
                         route: Route | None) -> Session | None:
    """An API client's Entra access token ([api] accept_bearer), as a cookie-less session."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return None
    claims = await state.entra.validate_bearer(token)
    if has_overage(claims) and (route.policy if route else state.policy).groups:
        # The API's token cannot call Graph: group membership is unknown, so no group rule
        # can pass (never treat an overage user as groupless).
        raise AccessDenied("This token carries too many groups to check the group rule.")
    return Session(Identity.from_claims(identity_claims(claims), state.extra_claims))


async def send_to_sign_in(request: web.Request, state: State) -> web.StreamResponse:
    """A browser without a session: sign in, then come back to exactly this URL."""
    origin = state.config.server.origin
    if request.host.lower() != origin.raw_authority.lower():
        # Another host behind the same proxy: sign in on the public_url host (where the
        # callback and its login cookie live) and return to this host afterwards, which
        # must be in allowed_redirect_hosts (and cookie_domain must cover both).
        here = f"{origin.scheme}://{request.host}{request.raw_path}"
        return redirect(f"{origin}/oauth2/start?rd={quote(here, safe='')}")
    if not state.config.ui.skip_provider_button:
        return sign_in_page(request, request.raw_path)
    return await begin_login(request, request.raw_path)


async def handle(request: web.Request) -> web.StreamResponse:
    state = get_state(request)
    route = route_request(request, state.routes, state.config.server.origin.scheme)
    if route is None:
        raise NotFound("No application is configured at this address.")
    request[ROUTE] = route
    if route.is_public(request.raw_path):
        return await forward(request, route, outgoing_headers(request, state),
                             state.upstream_http, state.upstream_pool)
    session = await authenticate(request, state, route)
    if session is None:
        if is_navigation(request):
            return await send_to_sign_in(request, state)
        raise Unauthenticated("Sign in first: this request carries no valid session.")
    identity = session.identity
    request[USER] = identity.user
    decision = route.policy.decide(identity)
    if not decision.allowed:
        log.warning("access denied request_id=%s user=%s route=%s reason=%s",
                    request[REQUEST_ID], identity.user, route.name, decision.reason)
        raise AccessDenied(f"You are signed in as {identity.user}, but {decision.reason}.")
    headers = outgoing_headers(request, state)
    add_identity(headers, session, route, state)
    return await forward(request, route, headers, state.upstream_http, state.upstream_pool)


def outgoing_headers(request: web.Request, state: State) -> CIMultiDict[str]:
    """The request's headers as the upstream gets them, before identity headers (built only
    for requests that are forwarded, not for those sent to sign in or refused)."""
    peer = request.remote
    return upstream_headers(
        request.headers, owned=state.owned_headers, cookie_prefix=state.sessions.name,
        peer=peer, peer_is_trusted=peer_trusted(peer, state.trusted),
        scheme=state.config.server.origin.scheme, request_id=request[REQUEST_ID],
        forwarded_host=forwarded_host(request))


def add_identity(headers: CIMultiDict[str], session: Session, route: Route | None,
                 state: State) -> None:
    """Everything the upstream learns about the user, after every client copy was stripped
    (built once per identity: upstream_identity.py)."""
    state.upstream_identity.add(headers, session, route.audience if route else None)
