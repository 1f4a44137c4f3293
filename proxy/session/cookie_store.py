"""The `cookie` store: identity claims (never tokens) in signed cookies, chunked past 4 KB."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from ..config import SessionConfig
from ..errors import SessionTooLarge
from ..identity import Identity
from .budget import CHUNK_SIZE, MAX_CHUNKS, SESSION_MAX
from .cookies import CookieSpec, session_cookie_names
from .signing import SESSION_SALT, VerifiedCookies, app_salt, serializer
from .store import Session


def _identity(payload: object) -> Identity | None:
    """A verified session cookie's identity; one without oid and tid is no session."""
    if not isinstance(payload, dict):
        return None
    identity = Identity.from_stored(payload)
    return identity if identity.oid and identity.tid else None


@asynccontextmanager
async def _no_lock() -> AsyncIterator[bool]:
    yield False


class CookieStore:
    server_side = False

    def __init__(self, config: SessionConfig, app: str = "") -> None:
        self.name = config.cookie_name
        self.max_age = config.max_age
        self._serializer = serializer(config.signing_keys, app_salt(SESSION_SALT, app))
        self._verified = VerifiedCookies(self._serializer, self.max_age, _identity)

    async def load(self, cookies: Mapping[str, str]) -> Session | None:
        identity = self.load_identity(cookies)
        return Session(identity) if identity else None

    def load_identity(self, cookies: Mapping[str, str]) -> Identity | None:
        """The identity in the request's session cookie(s); None if absent, forged or expired."""
        value = self._joined(cookies)
        return self._verified.load(value) if value else None

    async def save(self, session: Session, cookies: Mapping[str, str]) -> list[CookieSpec]:
        """Cookies to set for a new session, plus deletions of leftover chunks."""
        value = self._serializer.dumps(session.identity.to_dict())
        if len(value) > SESSION_MAX:
            raise SessionTooLarge(
                f"Your account's sign-in details ({len(session.identity.groups)} groups) are "
                "too large to keep in a browser cookie. The administrator can keep sessions "
                "on the server instead ([session] store = \"redis\" or \"memory\").",
                size=str(len(value)), groups=str(len(session.identity.groups)))
        max_age = int(self.max_age)
        if len(value) <= CHUNK_SIZE:
            specs = [CookieSpec(self.name, value, max_age)]
        else:
            parts = [value[i:i + CHUNK_SIZE] for i in range(0, len(value), CHUNK_SIZE)]
            specs = [CookieSpec(f"{self.name}_{i}", p, max_age) for i, p in enumerate(parts)]
        written = {s.name for s in specs}
        return specs + [s for s in await self.clear(cookies) if s.name not in written]

    async def update(self, session: Session) -> None:
        return None

    async def clear(self, cookies: Mapping[str, str]) -> list[CookieSpec]:
        return [CookieSpec(n, "", None) for n in session_cookie_names(cookies, self.name)]

    async def clear_id(self, session_id: str) -> None:
        return None

    async def end_sid(self, sid: str) -> int:
        return 0  # nothing is kept server-side to end

    def refresh_lock(self, session_id: str) -> AbstractAsyncContextManager[bool]:
        return _no_lock()

    async def reload(self, session_id: str) -> Session | None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _joined(self, cookies: Mapping[str, str]) -> str:
        if self.name in cookies:
            return cookies[self.name]
        parts = []
        for i in range(MAX_CHUNKS):
            part = cookies.get(f"{self.name}_{i}")
            if part is None:
                break
            parts.append(part)
        return "".join(parts)
