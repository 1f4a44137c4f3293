"""The sign-in endpoints: /oauth2/start, /callback/{connector_id}, sign-out and Entra's logouts
(the flow they share with other handlers is in signin.py)."""

from __future__ import annotations

import dataclasses
import logging
import re
import time

from aiohttp import web

from .errors import (
    AccessDenied,
    BadRequest,
    IdPDenied,
    IdPError,
    IdPFailure,
    ProxyError,
    SessionTooLarge,
)
from .identity import Identity
from .metrics import reason
from .oidc import aadsts
from .oidc.tokens import tenant_allowed
from .pages import NO_STORE
from .session.login_state import LoginStateError
from .session.store import Session, tokens_from
from .signin import begin_login, cookie_deletes, end_session, redirect, signed_out_page
from .state import (
    EXCHANGE,
    METRICS,
    REQUEST_ID,
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


def _idp_error(request: web.Request, error: str, description: str) -> IdPDenied | IdPFailure:
    """Entra's error redirect. Both texts are anyone's words (a link can carry them): the page
    shows a known error name, the AADSTS digits and OUR hint; the log adds Entra's first line."""
    code = aadsts.code_in(description)
    shown = error if error in aadsts.KNOWN_ERRORS else "an error"
    message = (f"Microsoft Entra ID refused the sign-in ({shown}"
               f"{f', AADSTS{code}' if code else ''}).")
    extra = aadsts.page_text(aadsts.hint(code, get_state(request).config))
    cls = IdPDenied if error in _DENIED else IdPFailure
    return cls(f"{message} {extra}".strip(), error=error[:60], aadsts=str(code or ""),
               reason="idp-error", detail=aadsts.first_line(description))


# Context fields of a refusal that go in its log line, in this order, after the reason.
_LOGGED = ("error", "aadsts", "hint", "detail", "tid", "user", "missing", "size", "groups")


def _log_refusal(request: web.Request, exc: ProxyError) -> None:
    """One WARNING line per failed callback: the request id the page shows, the reason (a
    fixed text of ours), and Entra's error, code and our fix when Entra said no."""
    context = dict(exc.context)
    code = context.get("aadsts", "")
    found = aadsts.hint(int(code) if code.isdigit() else None, get_state(request).config)
    if found is not None:
        context["hint"] = found.admin
    template = "login %s request_id=%s reason=%s"
    args: list[str] = ["failed" if isinstance(exc, IdPError) else "refused",
                       request[REQUEST_ID], context.get("reason") or exc.public]
    for key in _LOGGED:
        if context.get(key):
            template += f" {'idp_error' if key == 'error' else key}=%s"
            args.append(context[key])
    log.warning(template, *args)


async def callback(request: web.Request) -> web.Response:
    logins = request.app[METRICS].logins
    try:
        response = await _complete_login(request)
    except ProxyError as exc:
        logins.labels("failed", reason(exc)).inc()
        _log_refusal(request, exc)
        raise
    logins.labels("completed", "").inc()
    return response


async def _complete_login(request: web.Request) -> web.Response:
    state = get_state(request)
    query = request.query
    try:
        login = state.logins.finish(query.get("state"), session_cookies(request))
        request[EXCHANGE].cookies.append(state.logins.clear(login.state))
    except LoginStateError as exc:
        # Without our state, an error= text is anyone's words: show none of it.
        raise BadRequest(f"Sign-in could not be completed: {exc}. Please start again.",
                         reason=str(exc)) from None
    if "error" in query:
        raise _idp_error(request, query["error"], query.get("error_description", ""))
    code = query.get("code")
    if not code:
        raise BadRequest("The sign-in response has no authorization code.",
                         reason="no-authorization-code")
    tokens = await state.entra.redeem(code, login)
    claims = await state.entra.validate(tokens["id_token"], login.nonce)
    if not tenant_allowed(state.config.azure, claims["tid"]):
        # A B2B guest signing in on organizations/common gets their home tenant's token:
        # guests of an allowed tenant need tenant_id = that tenant's GUID (the log says so).
        raise AccessDenied("Accounts from your organization (tenant) may not use this service.",
                           return_to=login.target, reason="tenant-not-allowed",
                           tid=claims["tid"], hint="a guest of an allowed tenant needs "
                           "[azure] tenant_id = that tenant's GUID")
    claims["groups"] = await state.entra.overage_groups(claims, tokens)
    identity = state.claim_rules.identity(claims)
    if state.claim_rules.email_dropped(claims):
        log.info("email claim not used request_id=%s user=%s tid=%s reason=not-verified-by-"
                 "entra (no xms_edov)", request[REQUEST_ID], identity.user, identity.tid)
    unmet = login.step_up.missing(identity.proof, time.time())
    if unmet is not None:
        # Entra signed the user in without what this sign-in asked for: refuse with a page
        # (another redirect to Entra would loop). callback() logs it, once.
        raise AccessDenied(f"You signed in as {identity.user}, but without {MEANING[unmet]}, "
                           "which this page requires.", return_to=login.target,
                           reason="step-up-not-satisfied", user=identity.user, missing=unmet)
    identity = await _with_earned_proof(request, state, identity)
    kept = tokens_from(tokens) if state.sessions.server_side else None
    try:
        request[EXCHANGE].cookies.extend(await state.sessions.save(Session(identity, tokens=kept),
                                                          session_cookies(request)))
    except SessionTooLarge as exc:
        exc.context.update(reason="session-too-large-for-cookie", user=identity.user)
        raise
    exchange = request[EXCHANGE]
    exchange.user, exchange.tenant = identity.user, identity.tid
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
        request[EXCHANGE].cookies.extend(cookie_deletes(request, state.sessions.name))
    log.info("front-channel logout request_id=%s sessions_ended=%d", request[REQUEST_ID], ended)
    return web.Response(text="", headers=NO_STORE)

