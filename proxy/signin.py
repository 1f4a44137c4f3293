"""Starting and ending a sign-in: what every handler that sends a browser to Entra, or signs
it out, shares (the gateway, /oauth2/*, /.auth/*). Handlers import this module, never each
other."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from aiohttp import web
from yarl import URL

from .errors import BadRequest, IdPError, StoreUnavailable
from .pages import NO_STORE, render
from .redirects import safe_target
from .request_target import resolve
from .session.budget import MAX_TARGET
from .session.cookies import CookieSpec, session_cookie_names
from .session.login_state import LoginState
from .session.store import Session
from .state import EXCHANGE, METRICS, REQUEST_ID, State, get_state, session_cookies
from .step_up import StepUp

log = logging.getLogger("proxy.auth")


def redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, **NO_STORE})


async def begin_login(request: web.Request, target: str,
                      prompt: str | None = None) -> web.Response:
    """Start the authorization-code flow (PKCE S256, state, nonce) for this browser."""
    state = get_state(request)
    safe = safe_target(target, state.config.server.public_url,
                       state.config.server.allowed_redirect_hosts)
    if len(safe) > MAX_TARGET:
        # The target rides in the login cookie: past this, the cookie would break the
        # cookie budget (or be dropped by the browser), and the sign-in could never finish.
        log.warning("login refused request_id=%s reason=return-target-too-long length=%d",
                    request[REQUEST_ID], len(safe))
        raise BadRequest(f"The address to return to after sign-in is longer than "
                         f"{MAX_TARGET} characters. Open a shorter link and sign in again.")
    login = LoginState.new(safe, target_step_up(state, safe))
    try:
        url = await state.entra.authorize_url(login, prompt=prompt, step_up=login.step_up)
    except IdPError as exc:  # discovery: the page's text (ours, with any AADSTS fix) logged
        log.warning("login not started request_id=%s reason=%s", request[REQUEST_ID],
                    exc.public)
        raise
    request[EXCHANGE].cookies.extend(state.logins.start(login, session_cookies(request)))
    request.app[METRICS].logins.labels("started", "").inc()
    log.info("login started request_id=%s", request[REQUEST_ID])
    return redirect(url)


def target_step_up(state: State, target: str) -> StepUp:
    """The step-up of the route the sign-in returns to: asked for at sign-in, so a browser
    going to a stepped-up page signs in once, and the callback checks Entra delivered it."""
    url = URL(target)
    host = url.raw_authority if url.is_absolute() else state.config.server.origin.raw_authority
    try:
        route, _ = resolve(state.routes, [host], url.raw_path_qs or "/", state.scheme)
    except BadRequest:
        return StepUp()  # the gateway refuses such a target anyway
    return route.policy.step_up if route else state.policy.step_up


async def end_session(request: web.Request, target: str | None,
                      done: str | None) -> web.Response:
    """Sign-out for /oauth2/sign_out and /.auth/logout: delete the session everywhere, go to
    Entra's logout with federated_logout, else to a safe `target`, `done` or the page."""
    state = get_state(request)
    session = None
    try:
        session = await state.sessions.load(session_cookies(request))
        request[EXCHANGE].cookies.extend(await state.sessions.clear(session_cookies(request)))
    except StoreUnavailable:
        # The cookie goes regardless; the record expires on its own.
        log.warning("sign-out could not reach the session store request_id=%s",
                    request[REQUEST_ID])
        request[EXCHANGE].cookies.extend(cookie_deletes(request, state.sessions.name))
    if state.config.azure.federated_logout:
        return redirect(await _entra_logout_url(request, session))
    server = state.config.server
    safe = safe_target(target, server.public_url, server.allowed_redirect_hosts, default="")
    if safe or done:
        return redirect(safe or done or "/")
    return signed_out_page(request)


def cookie_deletes(request: web.Request, name: str) -> list[CookieSpec]:
    """Delete the session cookies without asking the store (which may be down)."""
    return [CookieSpec(n, "", None)
            for n in session_cookie_names(session_cookies(request), name)]


async def _entra_logout_url(request: web.Request, session: Session | None) -> str:
    state = get_state(request)
    metadata = await state.entra.metadata()
    params = {"post_logout_redirect_uri":
              f"{state.config.server.public_url.rstrip('/')}/oauth2/signed_out",
              "client_id": state.config.azure.client_id}
    if session is not None:
        # logout_hint (the login_hint claim) names the account in a few dozen characters;
        # the whole ID token is sent only when there is no hint, as it makes the URL long.
        if hint := session.identity.extra.get("login_hint"):
            params["logout_hint"] = hint
        elif session.tokens and session.tokens.id_token:
            params["id_token_hint"] = session.tokens.id_token
    return f"{metadata.end_session_endpoint}?{urlencode(params)}"


def signed_out_page(request: web.Request) -> web.Response:
    return render(request, "Signed out", "You have been signed out.",
                  links=(("Sign in again", "/oauth2/start"),))


