"""Keep server-side sessions' tokens fresh: one refresh per session at a time.

A refresh Entra rejects (invalid_grant: revoked, expired, password changed) ends the
session, so the user signs in again; a network failure or Entra outage does not.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from . import logs
from .errors import IdPError, LoginRejected, TokenRejected
from .identity import ClaimRules, Identity
from .oidc.client import EntraClient
from .session.store import Session, SessionStore, tokens_from

log = logging.getLogger("proxy.auth")


def needs_refresh(session: Session, window: float, now: float | None = None) -> bool:
    tokens = session.tokens
    if tokens is None or not tokens.refresh_token:
        return False
    return tokens.expires_at - window <= (time.time() if now is None else now)


async def ensure_fresh(session: Session, store: SessionStore, entra: EntraClient,
                       window: float, rules: ClaimRules) -> Session | None:
    """The session with fresh tokens, the same session if refreshing must wait, or None."""
    if not needs_refresh(session, window):
        return session
    async with store.refresh_lock(session.id) as mine:
        if not mine:
            return session  # another replica is refreshing; these tokens are still ours
        current = await store.reload(session.id)
        if current is None or not needs_refresh(current, window):
            return current  # ended meanwhile, or refreshed by whoever held the lock
        assert current.tokens is not None
        try:
            response = await entra.refresh(current.tokens.refresh_token)
            identity = await _refreshed_identity(current, response, entra, rules)
        except TokenRejected as exc:
            log.info("session ended: refresh rejected user=%s error=%s", current.identity.user,
                     exc.context.get("error", ""))
            await store.clear_id(current.id)
            return None
        except (IdPError, LoginRejected) as exc:
            # detail: the client credential's cause (a file, an endpoint) or Entra's AADSTS line.
            detail = exc.context.get("detail") or ""
            log.warning("token refresh failed, keeping the session user=%s reason=%s%s",
                        current.identity.user, type(exc).__name__,
                        f" detail={logs.escape(detail)}" if detail else "")
            return current
        fresh = current.with_tokens(tokens_from(response, current.tokens), identity)
        await store.update(fresh)
        log.info("tokens refreshed user=%s", fresh.identity.user)
        return fresh


async def _refreshed_identity(session: Session, response: dict[str, Any], entra: EntraClient,
                              rules: ClaimRules) -> Identity:
    id_token = response.get("id_token")
    if not isinstance(id_token, str):
        return session.identity
    claims = await entra.validate(id_token, nonce=None)
    old = session.identity
    # OIDC Core 12.2: a refreshed ID token must be about the same user from the same issuer.
    if (claims.get("sub"), claims.get("oid"), claims.get("tid")) != (old.sub, old.oid, old.tid):
        raise TokenRejected("The refreshed ID token is about another user.")
    # Groups are what this token says, and nothing else: Entra omits a claim that has no
    # value, so a user removed from their last group gets a token with no `groups` at all
    # (keeping the old ones would keep a removed user in until max_age). On overage, Graph
    # answers with the new access token; if it cannot, the refresh fails like an outage.
    claims["groups"] = await entra.overage_groups(claims, response)
    claims["sid"] = claims.get("sid") or old.sid
    identity = rules.identity(claims)
    # A refresh never takes away the step-up proof the session earned (step_up.Proof).
    return dataclasses.replace(identity, proof=old.proof.merge(identity.proof))
