"""The request path for everything the proxy forwards: route → admission → forward."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from .admission import admit
from .errors import NotFound, SignInRequired, StepUpRequired
from .headers import peer_trusted, upstream_headers
from .pages import sign_in_page
from .request_kind import is_navigation
from .request_target import resolve
from .routes import Route
from .signin import begin_login, redirect
from .state import EXCHANGE, REQUEST_ID, State
from .upstream import forward
from .upstream_token import upstream_token


async def send_to_sign_in(request: web.Request, state: State,
                          step_up: StepUpRequired | None = None) -> web.StreamResponse:
    """A browser without a session, or whose session lacks the route's step-up: sign in,
    then come back to exactly this URL."""
    origin = state.config.server.origin
    if request.host.lower() != origin.raw_authority.lower():
        # Another host behind the same proxy: sign in on the public_url host (where the
        # callback and its login cookie live) and return to this host afterwards, which
        # must be in allowed_redirect_hosts (and cookie_domain must cover both).
        here = f"{origin.scheme}://{request.host}{request.raw_path}"
        return redirect(f"{origin}/oauth2/start?rd={quote(here, safe='')}")
    if step_up is not None:
        # Signed in already: straight to Entra (an old sign-in is forced to be redone, in
        # case Entra does not honour max_age).
        return await begin_login(request, request.raw_path,
                                 prompt="login" if step_up.missing == "auth_time" else None)
    if not state.config.ui.skip_provider_button:
        return sign_in_page(request, request.raw_path)
    return await begin_login(request, request.raw_path)


async def handle(request: web.Request) -> web.StreamResponse:
    exchange = request[EXCHANGE]
    state = exchange.state
    route, exchange.authority = resolve(state.routes, request.headers.getall("Host", []),
                                        request.raw_path, state.scheme)
    if route is None:
        raise NotFound("No application is configured at this address.")
    exchange.route = route
    if route.is_public(request.raw_path):
        return await forward(request, state, route, exchange,
                             outgoing_headers(request, state, route, exchange.authority))
    try:
        session = await admit(request, state, route, exchange=exchange)
        headers = outgoing_headers(request, state, route, exchange.authority)
        if route.pass_authorization:  # (the client's Authorization is gone: outgoing_headers)
            headers["Authorization"] = "Bearer " + await upstream_token(request, state, session)
    except SignInRequired:  # no session, or it ended for want of the upstream's token
        if is_navigation(request):
            return await send_to_sign_in(request, state)
        raise
    except StepUpRequired as exc:
        if is_navigation(request):
            return await send_to_sign_in(request, state, exc)
        raise
    # Everything the upstream learns about the user, after every client copy was stripped
    # (built once per identity: upstream_identity.py).
    state.upstream_identity.add(headers, session, route.audience)
    return await forward(request, state, route, exchange, headers)


def outgoing_headers(request: web.Request, state: State, route: Route,
                     authority: str) -> CIMultiDict[str]:
    """The request's headers as the upstream gets them, before identity headers (built only
    for requests that are forwarded, not for those sent to sign in or refused); `authority`
    the normalized Host the route was chosen on (request_target.resolve). On a route
    that gets the proxy's Authorization, the client's never goes up, not even on a public
    path: the app trusts that header."""
    peer = request.remote
    headers = upstream_headers(
        request.headers, owned=state.owned_headers, cookie_prefix=state.sessions.name,
        peer=peer, peer_is_trusted=peer_trusted(peer, state.trusted),
        scheme=state.scheme, request_id=request[REQUEST_ID],
        forwarded_host=authority)
    if route.pass_authorization:
        headers.popall("Authorization", None)
    return headers

