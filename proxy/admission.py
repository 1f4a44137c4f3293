"""Who is this, and may they? The one answer for every endpoint that needs a user.

`admit(request, state, route, gate)` authenticates (API bearer token, else the session
cookie, refreshing a server-side session's tokens), records the user for the access log,
applies the route's access policy (the global one without a route), logs a refusal and
raises: SignInRequired when there is no session at all (the gateway sends a browser to
sign in instead), AccessDenied when the policy says no, StepUpRequired when the route's
step-up (acrs, auth_time, MFA: step_up.py) asks for a proof the session lacks. A stored
session is first held to today's sign-in rules (client_id, issuer, allowed tenants, trust
in unverified email). Anything later checks per request (revocation) belongs here, so
every endpoint gets it at once.

The endpoints differ only in what counts, fixed per endpoint by a `Gate` constant (no
per-request allocation): the gateway and /oauth2/auth admit with everything; /.auth/me
reports a session without a policy check (as App Service does); /oauth2/userinfo reports
the cookie's session as stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiohttp import web

from .errors import AccessDenied, SignInRequired, StepUpRequired
from .headers import own_cookies
from .identity import Identity
from .oidc.bearer import bearer_token, identity_claims
from .oidc.callers import caller_problem, calling_client
from .oidc.graph import has_overage
from .refresh import ensure_fresh
from .routes import Route
from .session.store import Session
from .state import EXCHANGE, REQUEST_ID, Exchange, State, session_cookies
from .step_up import MEANING

log = logging.getLogger("proxy.auth")


@dataclass(frozen=True, slots=True)
class Gate:
    bearer: bool = True  # an API client's Entra access token counts ([api] accept_bearer)
    refresh: bool = True  # a server-side session's tokens are refreshed before use
    authorize: bool = True  # the route's (or global) access policy must allow the user
    missing: str = "Sign in first: this request carries no valid session."


APP = Gate()  # the gateway and forward auth (/oauth2/auth)
EASY_AUTH_ME = Gate(bearer=False, authorize=False, missing="No valid session.")
USERINFO = Gate(bearer=False, refresh=False, authorize=False, missing="No valid session.")


async def admit(request: web.Request, state: State, route: Route | None,
                gate: Gate = APP, *, exchange: Exchange | None = None) -> Session:
    """The request's session, admitted to `route`; raises SignInRequired or AccessDenied.
    `exchange`: the request's, when the caller holds it already."""
    session = None
    if gate.bearer and state.config.api.accept_bearer:
        session = await bearer_session(request, state, route)
    if session is None:
        sessions = state.sessions
        session = await sessions.load(own_cookies(request.headers, sessions.name))
        if session is not None and (reason := _stale(state, session.identity)):
            await _refuse_stale(request, state, session, reason)
        if session is not None and gate.refresh and sessions.server_side:
            session = await _fresh(request, state, session)
        if session is None:
            raise SignInRequired(gate.missing)
    identity = session.identity
    if exchange is None:
        exchange = request[EXCHANGE]
    exchange.user, exchange.tenant = identity.user, identity.tid
    if gate.authorize:
        policy = route.policy if route else state.policy
        decision = policy.decide(identity)
        if not decision.allowed:
            log.warning("access denied request_id=%s user=%s route=%s reason=%s",
                        request[REQUEST_ID], identity.user, route.name if route else "-",
                        decision.reason)
            raise AccessDenied(f"You are signed in as {identity.user}, but {decision.reason}.")
        if policy.step_up and (missing := policy.step_up.missing(identity.proof, time.time())):
            log.info("step-up required request_id=%s user=%s route=%s missing=%s",
                     request[REQUEST_ID], identity.user, route.name if route else "-", missing)
            raise StepUpRequired(f"This page needs {MEANING[missing]}: sign in again.",
                                 missing=missing, challenge=policy.step_up.challenge(missing))
    return session


def _stale(state: State, identity: Identity) -> str | None:
    """Why a session is not honoured any more (None: it is). It is only under the rules
    that would admit its sign-in now: made for this client_id and issuer, from a tenant
    still allowed. A reload, a restart or another proxy sharing the store cannot stretch
    an old session past today's rules. (Not a coroutine: this runs on every request.)"""
    reason = state.binding.mismatch(identity.aud, identity.iss, identity.tid)
    if reason is None and identity.email and not identity.email_vouched \
            and not state.claim_rules.trust_unverified_email:
        reason = "unverified-email-no-longer-trusted"  # sign in again: the email is dropped
    return reason


async def _refuse_stale(request: web.Request, state: State, session: Session,
                        reason: str) -> None:
    log.warning("session refused request_id=%s user=%s reason=%s", request[REQUEST_ID],
                session.identity.user, reason)
    request[EXCHANGE].cookies.extend(await state.sessions.clear(session_cookies(request)))
    if reason == "tenant-not-allowed":  # the answer a fresh sign-in would get
        raise AccessDenied("Accounts from your organization (tenant) may not use this service.")
    raise SignInRequired("Sign in again: your session was made under other settings.")


async def _fresh(request: web.Request, state: State, session: Session) -> Session | None:
    """The session with fresh tokens; None when the refresh ended it (cookies deleted)."""
    fresh = await ensure_fresh(session, state.sessions, state.entra,
                               state.config.session.refresh, state.claim_rules)
    if fresh is None:
        request[EXCHANGE].cookies.extend(await state.sessions.clear(session_cookies(request)))
    return fresh


async def bearer_session(request: web.Request, state: State,
                         route: Route | None) -> Session | None:
    """An API client's Entra access token ([api] accept_bearer), as a cookie-less session."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return None
    claims = await state.entra.validate_bearer(token)
    # Entra issues tokens for the API to any app in the tenant: only listed callers, with a
    # required scope or app role, count. (App-only tokens need the route's allow_apps too:
    # the policy's check, so every route gets it.)
    problem = caller_problem(claims, state.config.api)
    if problem is not None:
        log.warning("bearer caller refused request_id=%s client=%s reason=%s",
                    request[REQUEST_ID], calling_client(claims)[:64], problem)
        raise AccessDenied(f"This API refuses the token: {problem}.")
    if has_overage(claims) and (route.policy if route else state.policy).groups:
        # The API's token cannot call Graph: group membership is unknown, so no group rule
        # can pass (never treat an overage user as groupless).
        raise AccessDenied("This token carries too many groups to check the group rule.")
    return Session(state.claim_rules.identity(identity_claims(claims)))
