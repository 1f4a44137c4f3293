"""The sign-in endpoints: /oauth2/start, /callback/{connector_id}, sign-out and Entra's logouts
(the flow they share with other handlers is in signin.py)."""

from __future__ import annotations

import dataclasses
import logging
import re
import time

from aiohttp import web

from . import logs
from .errors import (
    AccessDenied,
    BadRequest,
    IdPDenied,
    IdPError,
    IdPFailure,
    LoginRejected,
    ProxyError,
    SessionTooLarge,
)
from .identity import Identity
from .metrics import reason
from .oidc.tokens import tenant_allowed
from .pages import NO_STORE
from .session.login_state import LoginStateError
from .session.store import Session, tokens_from
from .signin import begin_login, cookie_deletes, end_session, redirect, signed_out_page
from .state import (
    COOKIES,
    METRICS,
    REQUEST_ID,
    TENANT,
    USER,
    State,
    get_state,
    session_cookies,
)
from .step_up import MEANING

log = logging.getLogger("proxy.auth")
# Errors a person can act on (cancelled, not assigned, needs consent) versus a broken IdP.
_DENIED = {"access_denied", "consent_required", "interaction_required", "login_required",
           "unauthorized_client"}
_SID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


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
        if isinstance(exc, LoginRejected):
            # The operator's only clue to which ID token check failed (a key of another
            # tenant, a stale nonce...); reasons are fixed texts, never token contents.
            log.warning("login refused request_id=%s reason=%s", request[REQUEST_ID],
                        exc.reason)
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
    try:
        tokens = await state.entra.redeem(code, login)
    except IdPError as exc:
        # The operator's clue: the credential's cause (a file, an endpoint) or Entra's
        # AADSTS line; the page says only that the sign-in service failed.
        cause = exc.context.get("cause") or exc.context.get("detail") or exc.public
        log.warning("login failed request_id=%s step=code-redemption reason=%s",
                    request[REQUEST_ID], logs.escape(cause))
        raise
    claims = await state.entra.validate(tokens["id_token"], login.nonce)
    if not tenant_allowed(state.config.azure, claims["tid"]):
        # A B2B guest signing in on organizations/common gets their home tenant's token:
        # guests of an allowed tenant need tenant_id = that tenant's GUID (the log says so).
        log.warning("login refused request_id=%s reason=tenant-not-allowed tid=%s (a guest of "
                    "an allowed tenant needs [azure] tenant_id = that tenant's GUID)",
                    request[REQUEST_ID], claims["tid"])
        raise AccessDenied("Accounts from your organization (tenant) may not use this service.",
                           return_to=login.target)
    claims["groups"] = await state.entra.overage_groups(claims, tokens)
    identity = state.claim_rules.identity(claims)
    if state.claim_rules.email_dropped(claims):
        log.info("email claim not used request_id=%s user=%s tid=%s reason=not-verified-by-"
                 "entra (no xms_edov)", request[REQUEST_ID], identity.user, identity.tid)
    unmet = login.step_up.missing(identity.proof, time.time())
    if unmet is not None:
        # Entra signed the user in without what this sign-in asked for: refuse with a page
        # (another redirect to Entra would loop).
        log.warning("login refused request_id=%s user=%s reason=step-up-not-satisfied "
                    "missing=%s", request[REQUEST_ID], identity.user, unmet)
        raise AccessDenied(f"You signed in as {identity.user}, but without {MEANING[unmet]}, "
                           "which this page requires.", return_to=login.target)
    identity = await _with_earned_proof(request, state, identity)
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
    request[TENANT] = identity.tid
    log.info("login completed request_id=%s user=%s tid=%s", request[REQUEST_ID],
             identity.user, identity.tid)
    return redirect(login.target)


async def _with_earned_proof(request: web.Request, state: State, identity: Identity) -> Identity:
    """The session keeps the strongest proof it earned: a sign-in by the same user (same
    app registration and issuer) adds to the proof of the session it replaces."""
    old = await state.sessions.load(session_cookies(request))
    if old is None or (old.identity.key, old.identity.aud, old.identity.iss) != (
            identity.key, identity.aud, identity.iss):
        return identity
    return dataclasses.replace(identity, proof=old.identity.proof.merge(identity.proof))


async def sign_out(request: web.Request) -> web.Response:
    """End the session here (and, with federated_logout, at Entra too)."""
    target = request.query.get("rd")
    if request.method == "POST" and target is None:
        form = await request.post()
        target = str(form.get("rd", "")) or None
    return await end_session(request, target, done=None)


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
        request[COOKIES].extend(cookie_deletes(request, state.sessions.name))
    log.info("front-channel logout request_id=%s sessions_ended=%d", request[REQUEST_ID], ended)
    return web.Response(text="", headers=NO_STORE)

