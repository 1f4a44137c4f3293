"""The upstream API's access token (`pass_authorization_header`): asked of Entra with the
session's refresh token on first use (`grant_type=refresh_token`, `scope=<[azure]
upstream_scopes> offline_access`: one token per resource), kept in the server-side session,
and asked again `session.refresh` before it expires; one request per session at a time.

Never forwarded without it: a refresh token Entra rejects ends the session (sign in again);
missing consent, or a first request rejected right after sign-in (which signing in again
would not cure: no redirect loop), is a 403 saying why; an unreachable Entra is a
502/503/504 unless the token in hand is still valid. A request admitted by an `[api]`
bearer token has no refresh token to ask with: it is refused (the caller's own token is
for the proxy, not the app).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import NoReturn

from aiohttp import web

from .errors import AccessDenied, IdPError, IdPFailure, IdPTimeout, SignInRequired, TokenRejected
from .session.store import Session, Tokens, with_upstream_token
from .state import EXCHANGE, REQUEST_ID, State, session_cookies

log = logging.getLogger("proxy.auth")
LEEWAY = 10.0  # seconds a token must still have to be sent on (it may expire in transit)
FRESH_SESSION = 120.0  # a rejection this soon after sign-in is not cured by signing in again
WAIT_FOR_OTHER = 5.0  # another replica is asking Entra: wait this long for its answer
POLL = 0.1
_CONSENT = frozenset({"consent_required", "interaction_required"})


def _scope(state: State) -> str:
    return " ".join(state.config.azure.upstream_scopes)


def _due(tokens: Tokens, window: float, now: float, scope: str) -> bool:
    return (not tokens.upstream_token or tokens.upstream_scope != scope
            or tokens.upstream_expires_at - window <= now)


def _valid(tokens: Tokens, now: float, scope: str) -> bool:
    """Still usable: for this config's API, and not about to expire."""
    return (bool(tokens.upstream_token) and tokens.upstream_scope == scope
            and tokens.upstream_expires_at > now + LEEWAY)


async def upstream_token(request: web.Request, state: State, session: Session) -> str:
    """The user's access token for `[azure] upstream_scopes`; raises rather than return
    none (SignInRequired, AccessDenied, IdPError)."""
    tokens = session.tokens
    if tokens is None or not session.id:
        log.warning("upstream token refused request_id=%s user=%s reason=%s",
                    request[REQUEST_ID], session.identity.user,
                    "bearer-caller" if not session.id else "no-tokens")
        raise AccessDenied("This app takes signed-in users only: an API token is not passed "
                           "on to it.")
    window, scope = state.config.session.refresh, _scope(state)
    if not _due(tokens, window, time.time(), scope):
        return tokens.upstream_token
    deadline = time.monotonic() + WAIT_FOR_OTHER
    while True:
        async with state.sessions.refresh_lock(session.id) as mine:
            if mine:  # re-read under the lock: whoever held it may have done the work
                current = await state.sessions.reload(session.id)
                if current is None or current.tokens is None:
                    await _ended(request, state, "session-gone")
                if not _due(current.tokens, window, time.time(), scope):
                    return current.tokens.upstream_token
                return await _ask(request, state, current, current.tokens)
        # Another replica is asking Entra (for this token or the sign-in's): the token in
        # hand if still valid, else try the lock again until it is free or time is up.
        if _valid(tokens, time.time(), scope):
            return tokens.upstream_token
        if time.monotonic() >= deadline:
            log.warning("upstream token unavailable request_id=%s user=%s "
                        "reason=other-replica-slow", request[REQUEST_ID],
                        session.identity.user)
            raise IdPTimeout("The token for this app is still being fetched; try again.")
        await asyncio.sleep(POLL)


async def _ask(request: web.Request, state: State, session: Session, tokens: Tokens) -> str:
    scopes = (*state.config.azure.upstream_scopes, "offline_access")
    request_id, user = request[REQUEST_ID], session.identity.user
    try:
        response = await state.entra.refresh(tokens.refresh_token, scopes)
    except TokenRejected as exc:
        error, sub = exc.context.get("error", ""), exc.context.get("suberror", "")
        log.warning("upstream token refused by Entra request_id=%s user=%s error=%s "
                    "suberror=%s", request_id, user, error, sub)
        if error in _CONSENT or sub in _CONSENT:
            raise AccessDenied(f"Entra gives no token for this app's API ({sub or error}): "
                               "the app registration lacks that permission or its consent "
                               "(an administrator can grant it).") from None
        if not tokens.upstream_token and time.time() - session.created < FRESH_SESSION:
            # Never had one, just signed in: signing in again would get the same answer.
            raise AccessDenied("Entra refuses a token for this app's API, even right after "
                               "sign-in.") from None
        await _ended(request, state, "refresh-rejected")
    except IdPError as exc:
        if _valid(tokens, time.time(), _scope(state)):
            log.warning("upstream token refresh failed, using the current one request_id=%s "
                        "user=%s reason=%s", request_id, user, type(exc).__name__)
            return tokens.upstream_token
        log.warning("upstream token unavailable request_id=%s user=%s reason=%s", request_id,
                    user, type(exc).__name__)
        raise
    fresh = with_upstream_token(tokens, response, _scope(state))
    if not fresh.upstream_token:
        log.warning("upstream token unavailable request_id=%s user=%s reason=no-access-token",
                    request_id, user)
        raise IdPFailure("The token endpoint's answer has no access token.")
    await state.sessions.update(replace(session, tokens=fresh))
    log.info("upstream token obtained request_id=%s user=%s", request_id, user)
    return fresh.upstream_token


async def _ended(request: web.Request, state: State, reason: str) -> NoReturn:
    """Delete the session (its record, by the request's cookie) and its cookies."""
    log.info("session ended: no upstream token request_id=%s reason=%s", request[REQUEST_ID],
             reason)
    request[EXCHANGE].cookies.extend(await state.sessions.clear(session_cookies(request)))
    raise SignInRequired("Sign in again: your session has ended.")
