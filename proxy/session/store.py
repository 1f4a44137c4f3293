"""The session contract every store keeps (oauth2-proxy's SessionStore, async)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..identity import Identity
from .cookies import CookieSpec


@dataclass(frozen=True, slots=True)
class Tokens:
    """What Entra issued; kept server-side only (never in a cookie), encrypted in Redis."""

    access_token: str
    refresh_token: str
    id_token: str
    expires_at: float  # the access token's expiry, epoch seconds
    # The access token for [azure] upstream_scopes (pass_authorization_header), got with the
    # refresh token on first use; "" until then.
    upstream_token: str = ""
    upstream_expires_at: float = 0.0
    # The scopes it was asked for: a token for another API (upstream_scopes changed by a
    # reload, or replicas of two configs sharing Redis) is never sent to this one's app.
    upstream_scope: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.access_token, "rt": self.refresh_token, "it": self.id_token,
                "exp": self.expires_at, "ut": self.upstream_token,
                "uexp": self.upstream_expires_at, "us": self.upstream_scope}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokens:
        return cls(str(data["at"]), str(data["rt"]), str(data["it"]), float(data["exp"]),
                   str(data.get("ut") or ""), float(data.get("uexp") or 0.0),
                   str(data.get("us") or ""))


def expiry(response: Mapping[str, Any]) -> float:
    """When a token response's access token expires, epoch seconds."""
    expires_in = response.get("expires_in")
    try:
        lifetime = float(expires_in) if isinstance(expires_in, int | float | str) else 3600.0
    except ValueError:
        lifetime = 0.0
    # Unreadable, NaN or infinite: expired at once, never valid for ever.
    return time.time() + (lifetime if math.isfinite(lifetime) else 0.0)


def tokens_from(response: dict[str, Any], previous: Tokens | None = None) -> Tokens:
    """Tokens from a token response; Entra may omit a new refresh or ID token. The upstream
    token is not in it (another resource's): the previous one is kept."""
    return Tokens(
        access_token=str(response.get("access_token") or ""),
        refresh_token=str(response.get("refresh_token") or (previous.refresh_token
                                                             if previous else "")),
        id_token=str(response.get("id_token") or (previous.id_token if previous else "")),
        expires_at=expiry(response),
        upstream_token=previous.upstream_token if previous else "",
        upstream_expires_at=previous.upstream_expires_at if previous else 0.0,
        upstream_scope=previous.upstream_scope if previous else "",
    )


def with_upstream_token(tokens: Tokens, response: Mapping[str, Any], scope: str) -> Tokens:
    """`tokens` with the upstream API's access token (asked for `scope`) from a token
    response; a new refresh token in it replaces the old (the session's other tokens stay)."""
    return replace(tokens, upstream_token=str(response.get("access_token") or ""),
                   upstream_expires_at=expiry(response), upstream_scope=scope,
                   refresh_token=str(response.get("refresh_token") or tokens.refresh_token))


@dataclass(frozen=True, slots=True)
class Session:
    identity: Identity
    id: str = ""  # opaque server-side id; "" in the cookie store
    created: float = 0.0
    tokens: Tokens | None = None

    def with_tokens(self, tokens: Tokens, identity: Identity) -> Session:
        return replace(self, tokens=tokens, identity=identity)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One stored session as an administrator sees it: never its id in full, never tokens."""

    id_prefix: str  # the first characters of the opaque id: enough to tell sessions apart
    user: str
    oid: str
    tid: str
    created: float
    last_seen: float
    expires: float  # when it ends unless used: max_age, or sooner by idle_timeout

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id_prefix, "user": self.user, "oid": self.oid, "tenant": self.tid,
                "created": self.created, "last_seen": self.last_seen, "expires": self.expires}


class SessionStore(Protocol):
    name: str  # cookie name, also the prefix of every proxy cookie
    server_side: bool

    async def load(self, cookies: Mapping[str, str]) -> Session | None: ...

    async def save(self, session: Session, cookies: Mapping[str, str]) -> list[CookieSpec]:
        """Store a new session (a fresh id at every login: no fixation); cookies to set."""

    async def update(self, session: Session) -> None:
        """Rewrite an existing server-side session (after a token refresh)."""

    async def clear(self, cookies: Mapping[str, str]) -> list[CookieSpec]: ...

    async def clear_id(self, session_id: str) -> None: ...

    async def end_sid(self, sid: str) -> int:
        """End every session of an Entra sign-in session id (front-channel logout)."""

    def refresh_lock(self, session_id: str) -> AbstractAsyncContextManager[bool]:
        """Held while one request refreshes a session's tokens; yields False if busy."""

    async def reload(self, session_id: str) -> Session | None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
