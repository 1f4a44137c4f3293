"""`memory` and `redis` stores: the cookie holds only a signed opaque id; claims and tokens
live server-side, encrypted, which enables refresh, passthrough and revocation."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..config import SessionConfig
from ..hot_cache import HotCache
from ..identity import Identity
from .backend import Backend
from .cookies import CookieSpec, chunk_names, session_cookie_names
from .crypto import RecordCipher, RecordUnreadable
from .signing import VERIFIED_CACHE_TTL, VerifiedCookies, app_salt, serializer
from .store import Session, SessionInfo, Tokens

ID_SALT = "azp.session.id"
_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
REFRESH_LOCK_TTL = 15.0
OPENED_CACHE_SIZE = 2048  # decrypted records of sessions used in the last minute
ADMIN_READ_BATCH = 256  # records read at once when listing or revoking
ID_SHOWN = 8  # characters of a session id an administrator sees (of 43)


class ServerSideStore:
    server_side = True

    def __init__(self, config: SessionConfig, backend: Backend, app: str = "") -> None:
        self.name = config.cookie_name
        self.max_age = config.max_age
        self.idle_timeout = config.idle_timeout
        self._ids = serializer(config.signing_keys, app_salt(ID_SALT, app))
        # Every key is namespaced per application (client_id and cookie name): proxies that
        # share one Redis never read, refresh or end each other's sessions.
        self._ns = f"{app}/{config.cookie_name}:"
        self._cipher = RecordCipher(config.signing_keys)
        self._backend = backend
        self._verified = VerifiedCookies(self._ids, self.max_age, _opaque_id)
        # The record as last read, with what it decrypted to: while the store returns the
        # same bytes, they are not decrypted and parsed again. The store is still read on
        # every request, so a session deleted or rewritten anywhere is seen at once.
        self._opened: HotCache[str, tuple[bytes, Session, float]] = HotCache(
            OPENED_CACHE_SIZE, VERIFIED_CACHE_TTL)

    def _session_id(self, cookies: Mapping[str, str]) -> str | None:
        raw = cookies.get(self.name)
        return self._verified.load(raw) if raw else None

    async def load(self, cookies: Mapping[str, str]) -> Session | None:
        session_id = self._session_id(cookies)
        return await self.reload(session_id) if session_id else None

    async def reload(self, session_id: str) -> Session | None:
        sealed = await self._backend.get(self._ns + "s:" + session_id)
        if sealed is None:
            return None
        now = time.time()
        opened = self._open(session_id, sealed, now)
        if opened is None:
            return None
        session, seen = opened
        if now - session.created > self.max_age:
            return None
        if self.idle_timeout and now - seen > self.idle_timeout:
            await self._backend.delete(self._ns + "s:" + session_id)
            return None
        if self.idle_timeout and now - seen > min(60.0, self.idle_timeout / 10):
            # The sliding idle window, written sparingly, and only over the record as read:
            # a refresh written meanwhile (new tokens, groups) is never undone.
            await self._write(session, seen=now, unchanged=sealed)
        return session

    def _open(self, session_id: str, sealed: bytes, now: float,
              remember: bool = True) -> tuple[Session, float] | None:
        """The session a record holds and when it was last seen; None if unreadable. Kept
        (`remember`) for the next request, unless only listed: an administrator listing
        every session must not push the sessions in use out of the cache."""
        opened = self._opened.get(session_id, now)
        if opened is not None and opened[0] == sealed:
            return opened[1], opened[2]
        try:
            record = json.loads(self._cipher.open(sealed, session_id))
            session = _session(session_id, record)
            seen = float(record.get("seen", session.created))
        except (RecordUnreadable, ValueError, KeyError, TypeError):
            return None
        if remember:
            self._opened.put(session_id, (sealed, session, seen), now)
        return session, seen

    async def save(self, session: Session, cookies: Mapping[str, str]) -> list[CookieSpec]:
        previous = self._session_id(cookies)
        if previous:
            await self._forget(previous)
        fresh = Session(session.identity, secrets.token_urlsafe(32), time.time(), session.tokens)
        await self._write(fresh, seen=fresh.created, existing=False)
        if fresh.identity.sid:
            await self._backend.add_to_set(self._ns + "sid:" + fresh.identity.sid, fresh.id,
                                           self.max_age)
        for index in self._indexes_of(fresh.identity):  # for `sessions list|revoke`
            await self._backend.index_add(index, fresh.id, fresh.created + self.max_age)
        value = self._ids.dumps(fresh.id)
        stale = [CookieSpec(n, "", None) for n in chunk_names(cookies, self.name)]
        return [*stale, CookieSpec(self.name, value, int(self.max_age))]

    async def update(self, session: Session) -> None:
        await self._write(session, seen=time.time())

    async def _write(self, session: Session, seen: float, existing: bool = True,
                     unchanged: bytes | None = None) -> None:
        """Write a session's record. A rewrite (`existing`) never brings back a record
        deleted meanwhile: a session revoked or signed out while a request refreshed it;
        with `unchanged`, only over those very bytes."""
        remaining = session.created + self.max_age - time.time()
        ttl = min(remaining, self.idle_timeout) if self.idle_timeout else remaining
        record: dict[str, Any] = {"identity": session.identity.to_dict(),
                                  "created": session.created, "seen": seen,
                                  "tokens": session.tokens.to_dict() if session.tokens else None}
        sealed = self._cipher.seal(json.dumps(record).encode(), session.id)
        await self._backend.set(self._ns + "s:" + session.id, sealed, max(ttl, 1.0),
                                existing=existing, unchanged=unchanged)

    async def clear(self, cookies: Mapping[str, str]) -> list[CookieSpec]:
        session_id = self._session_id(cookies)
        if session_id:
            await self._forget(session_id)
        return [CookieSpec(n, "", None) for n in session_cookie_names(cookies, self.name)]

    async def _forget(self, session_id: str) -> None:
        """Delete a session replaced by a new sign-in or signed out, and its index members:
        a user signing in again and again (each step-up, a script) must not grow the
        indexes by one member per sign-in until max_age."""
        key = self._ns + "s:" + session_id
        sealed = await self._backend.get(key)
        await self._backend.delete(key)
        opened = self._open(session_id, sealed, time.time(), remember=False) if sealed else None
        if opened is not None:
            identity = opened[0].identity
            for index in self._indexes_of(identity):
                await self._backend.index_remove(index, session_id)
            if identity.sid:  # (the set of its Entra sign-in session: front-channel logout)
                await self._backend.remove_from_set(self._ns + "sid:" + identity.sid,
                                                    session_id)

    async def clear_id(self, session_id: str) -> None:
        await self._backend.delete(self._ns + "s:" + session_id)

    async def end_sid(self, sid: str) -> int:
        ids = await self._backend.pop_set(self._ns + "sid:" + sid)
        for session_id in ids:
            await self._backend.delete(self._ns + "s:" + session_id)
        return len(ids)

    # Administration (`azure-auth-proxy sessions`, the admin listener): sessions are found
    # through indexes by user (preferred_username, else email, lowercased), by oid, and one
    # of every session, each member expiring with its session's max_age.
    def _indexes_of(self, identity: Identity) -> tuple[str, ...]:
        return (self._ns + "all", self._ns + "u:" + identity.user.lower(),
                self._ns + "oid:" + identity.oid.lower())

    def _index(self, user: str, oid: str) -> str:
        if user:
            return self._ns + "u:" + user.lower()
        return self._ns + "oid:" + oid.lower() if oid else self._ns + "all"

    async def _live(self, index: str) -> list[tuple[Session, float]]:
        """The sessions an index lists that still live; the members that do not are pruned."""
        ids = await self._backend.index_members(index)
        live: list[tuple[Session, float]] = []
        stale: list[str] = []
        for start in range(0, len(ids), ADMIN_READ_BATCH):
            batch = ids[start:start + ADMIN_READ_BATCH]
            records = await asyncio.gather(*(self._backend.get(self._ns + "s:" + session_id)
                                             for session_id in batch))
            now = time.time()
            for session_id, sealed in zip(batch, records, strict=True):
                opened = self._open(session_id, sealed, now, remember=False) if sealed else None
                if opened is None or now - opened[0].created > self.max_age:
                    stale.append(session_id)
                else:
                    live.append(opened)
        if stale:
            await self._backend.index_remove(index, *stale)
        return live

    async def sessions(self, user: str = "", oid: str = "") -> list[SessionInfo]:
        """The live sessions of `user`, else of `oid`, else all, oldest first."""
        found = [SessionInfo(session.id[:ID_SHOWN], session.identity.user, session.identity.oid,
                             session.identity.tid, session.created, seen, self._ends(session, seen))
                 for session, seen in await self._live(self._index(user, oid))]
        return sorted(found, key=lambda info: info.created)

    async def revoke(self, user: str = "", oid: str = "", everyone: bool = False) -> int:
        """End the sessions of `user`, else of `oid`, else (`everyone`) all: their records
        (and refresh tokens) are deleted, so each one's next request finds none, on every
        replica. How many were ended."""
        if not (user or oid or everyone):
            raise ValueError("revoke needs a user, an oid or everyone")
        live = await self._live(self._index(user, oid))
        for session, _ in live:
            await self._backend.delete(self._ns + "s:" + session.id)
            for index in self._indexes_of(session.identity):
                await self._backend.index_remove(index, session.id)
        return len(live)

    def _ends(self, session: Session, seen: float) -> float:
        ends = session.created + self.max_age
        return min(ends, seen + self.idle_timeout) if self.idle_timeout else ends

    def refresh_lock(self, session_id: str) -> AbstractAsyncContextManager[bool]:
        return self._backend.lock(self._ns + "refresh:" + session_id, REFRESH_LOCK_TTL)

    async def ping(self) -> None:
        await self._backend.ping()

    async def close(self) -> None:
        await self._backend.close()


def _opaque_id(payload: object) -> str | None:
    return payload if isinstance(payload, str) and _ID.match(payload) else None


def _session(session_id: str, record: dict[str, Any]) -> Session:
    tokens = record.get("tokens")
    return Session(
        identity=Identity.from_stored(record["identity"]),
        id=session_id,
        created=float(record["created"]),
        tokens=Tokens.from_dict(tokens) if tokens else None,
    )
