"""The session contract every store keeps (oauth2-proxy's SessionStore, async)."""

from __future__ import annotations

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

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.access_token, "rt": self.refresh_token, "it": self.id_token,
                "exp": self.expires_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokens:
        return cls(str(data["at"]), str(data["rt"]), str(data["it"]), float(data["exp"]))


def tokens_from(response: dict[str, Any], previous: Tokens | None = None) -> Tokens:
    """Tokens from a token response; Entra may omit a new refresh or ID token."""
    expires_in = response.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, int | float | str) else 3600.0
    return Tokens(
        access_token=str(response.get("access_token") or ""),
        refresh_token=str(response.get("refresh_token") or (previous.refresh_token
                                                             if previous else "")),
        id_token=str(response.get("id_token") or (previous.id_token if previous else "")),
        expires_at=time.time() + lifetime,
    )


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
