"""The sign-in flow: /oauth2/start, /callback/{connector_id}, sign-out and Entra's logouts."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlencode

from aiohttp import web

from .errors import (
    AccessDenied,
    BadRequest,
    IdPDenied,
    IdPFailure,
    ProxyError,
    SessionTooLarge,
    StoreUnavailable,
)
from .metrics import reason
from .oidc.tokens import tenant_allowed
from .pages import NO_STORE, render
from .redirects import safe_target
from .refresh import tokens_from
from .session.budget import MAX_TARGET
from .session.cookie_store import session_cookie_names
from .session.cookies import CookieSpec
from .session.login_state import LoginState, LoginStateError
from .session.store import Session
from .state import COOKIES, METRICS, REQUEST_ID, USER, get_state, session_cookies

log = logging.getLogger("proxy.auth")
# Errors a person can act on (cancelled, not assigned, needs consent) versus a broken IdP.
_DENIED = {"access_denied", "consent_required", "interaction_required", "login_required",
           "unauthorized_client"}
_SID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


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
    login = LoginState.new(safe)
    url = await state.entra.authorize_url(login, prompt=prompt)
    request[COOKIES].extend(state.logins.start(login, session_cookies(request)))
    request.app[METRICS].logins.labels("started", "").inc()
    log.info("login started request_id=%s", request[REQUEST_ID])
    return redirect(url)


async def start(request: web.Request) -> web.Response:
    # The 403 page's "Switch account" asks Entra for its account picker.
    prompt = "select_account" if request.query.get("prompt") == "select_account" else None
    return await begin_login(request, request.query.get("rd", "/"), prompt=prompt)


def _idp_error(error: str, description: str) -> IdPDenied | IdPFailure:
    # Entra puts "AADSTSnnnn: text\r\nTrace ID: ..." in the description: keep the first line.
    summary = description.splitlines()[0][:300] if description else ""
    message = f"Microsoft Entra ID answered {error[:60]!r}" + (f": {summary}" if summary else ".")
    cls = IdPDenied if error in _DENIED else IdPFailure
    return cls(message, error=error[:60])


async def callback(request: web.Request) -> web.Response:
    logins = request.app[METRICS].logins
    try:
        response = await _complete_login(request)
    except ProxyError as exc:
        logins.labels("failed", reason(exc)).inc()
        raise
    logins.labels("completed", "").inc()
    return response


async def _complete_login(request: web.Request) -> web.Response:
    state = get_state(request)
    query = request.query
    try:
        login = state.logins.finish(query.get("state"), session_cookies(request))
        request[COOKIES].append(state.logins.clear(login.state))
    except LoginStateError as exc:
        # Without our state, an error= text is anyone's words: show none of it.
        log.warning("login refused request_id=%s reason=%s", request[REQUEST_ID], exc)
        raise BadRequest(f"Sign-in could not be completed: {exc}. Please start again.") from None
    if "error" in query:
        log.warning("login failed request_id=%s idp_error=%s", request[REQUEST_ID],
                    query["error"][:60])
        raise _idp_error(query["error"], query.get("error_description", ""))
    code = query.get("code")
    if not code:
        raise BadRequest("The sign-in response has no authorization code.")
    tokens = await state.entra.redeem(code, login)
    claims = await state.entra.validate(tokens["id_token"], login.nonce)
    if not tenant_allowed(state.config.azure, claims["tid"]):
        log.warning("login refused request_id=%s reason=tenant-not-allowed", request[REQUEST_ID])
        raise AccessDenied("Accounts from your organization (tenant) may not use this service.")
    claims["groups"] = await state.entra.overage_groups(claims, tokens)
    identity = state.claim_rules.identity(claims)
    if state.claim_rules.email_dropped(claims):
        log.info("email claim not used request_id=%s user=%s tid=%s reason=not-verified-by-"
                 "entra (no xms_edov)", request[REQUEST_ID], identity.user, identity.tid)
    kept = tokens_from(tokens) if state.sessions.server_side else None
    try:
        request[COOKIES].extend(await state.sessions.save(Session(identity, tokens=kept),
                                                          session_cookies(request)))
    except SessionTooLarge as exc:
        log.warning("login refused request_id=%s user=%s reason=session-too-large-for-cookie "
                    "size=%s groups=%s", request[REQUEST_ID], identity.user,
                    exc.context.get("size"), exc.context.get("groups"))
        raise
    request[USER] = identity.user
    log.info("login completed request_id=%s user=%s tid=%s", request[REQUEST_ID],
             identity.user, identity.tid)
    return redirect(login.target)


async def sign_out(request: web.Request) -> web.Response:
    """End the session here (and, with federated_logout, at Entra too)."""
    target = request.query.get("rd")
    if request.method == "POST" and target is None:
        form = await request.post()
        target = str(form.get("rd", "")) or None
    return await end_session(request, target, done=None)


async def end_session(request: web.Request, target: str | None,
                      done: str | None) -> web.Response:
    """Sign-out for /oauth2/sign_out and /.auth/logout: delete the session everywhere, go to
    Entra's logout with federated_logout, else to a safe `target`, `done` or the page."""
    state = get_state(request)
    session = None
    try:
        session = await state.sessions.load(session_cookies(request))
        request[COOKIES].extend(await state.sessions.clear(session_cookies(request)))
    except StoreUnavailable:
        # The cookie goes regardless; the record expires on its own.
        log.warning("sign-out could not reach the session store request_id=%s",
                    request[REQUEST_ID])
        request[COOKIES].extend(_cookie_deletes(request, state.sessions.name))
    if state.config.azure.federated_logout:
        return redirect(await _entra_logout_url(request, session))
    server = state.config.server
    safe = safe_target(target, server.public_url, server.allowed_redirect_hosts, default="")
    if safe or done:
        return redirect(safe or done or "/")
    return signed_out_page(request)


def _cookie_deletes(request: web.Request, name: str) -> list[CookieSpec]:
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
        if hint := session.identity.extra.get("login_hint"):
            params["logout_hint"] = hint
        if session.tokens and session.tokens.id_token:
            params["id_token_hint"] = session.tokens.id_token
    return f"{metadata.end_session_endpoint}?{urlencode(params)}"


def signed_out_page(request: web.Request) -> web.Response:
    return render(request, "Signed out", "You have been signed out.",
                  links=(("Sign in again", "/oauth2/start"),))


async def signed_out(request: web.Request) -> web.Response:
    return signed_out_page(request)


async def frontchannel_logout(request: web.Request) -> web.Response:
    """Entra's front-channel logout: GET ?sid= only (no iss); end every session of that sid."""
    state = get_state(request)
    sid = request.query.get("sid", "")
    if not _SID.match(sid):
        raise BadRequest("Front-channel logout needs a valid sid.")
    ended = await state.sessions.end_sid(sid)
    session = await state.sessions.load(session_cookies(request))
    if session is None or session.identity.sid == sid:
        request[COOKIES].extend(_cookie_deletes(request, state.sessions.name))
    log.info("front-channel logout request_id=%s sessions_ended=%d", request[REQUEST_ID], ended)
    return web.Response(text="", headers=NO_STORE)

