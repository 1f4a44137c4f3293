"""The `memory` backend: one process only (cachetools, bounded, per-item expiry)."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cachetools import TLRUCache


def _expiry(_key: str, value: tuple[Any, ...], now: float) -> float:
    return now + float(value[1])


class MemoryBackend:
    def __init__(self, max_items: int) -> None:
        self._items: TLRUCache[str, tuple[object, float]] = TLRUCache(
            maxsize=max_items, ttu=_expiry, timer=time.monotonic)
        # Indexes (sessions by user, by oid) apart from the records: a busy store evicting its
        # oldest records never evicts the index that finds a live session to revoke. At most
        # two per session plus one (every session).
        # Each: (member -> expiry, ttl when written, the latest expiry).
        self._indexes: TLRUCache[str, tuple[dict[str, float], float, float]] = TLRUCache(
            maxsize=2 * max_items + 1, ttu=_expiry, timer=time.monotonic)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        return item[0] if item is not None and isinstance(item[0], bytes) else None

    async def set(self, key: str, value: bytes, ttl: float, *, existing: bool = False,
                  unchanged: bytes | None = None) -> None:
        if existing and key not in self._items:
            return
        if unchanged is not None and await self.get(key) != unchanged:
            return
        self._items[key] = (value, ttl)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._items.pop(key, None)

    async def add_to_set(self, key: str, member: str, ttl: float) -> None:
        item = self._items.get(key)
        members = item[0] if item is not None and isinstance(item[0], frozenset) else frozenset()
        self._items[key] = (members | {member}, ttl)

    async def remove_from_set(self, key: str, member: str) -> None:
        item = self._items.get(key)
        if item is not None and isinstance(item[0], frozenset):
            if rest := item[0] - {member}:
                self._items[key] = (rest, item[1])
            else:
                del self._items[key]

    async def pop_set(self, key: str) -> list[str]:
        item = self._items.pop(key, None)
        return sorted(item[0]) if item is not None and isinstance(item[0], frozenset) else []

    def _index(self, key: str) -> dict[str, float]:
        """The index's live members (expired ones dropped), kept in place."""
        item = self._indexes.get(key)
        if item is None:
            return {}
        members, now = item[0], time.time()
        for stale in [m for m, until in members.items() if until <= now]:
            del members[stale]
        return members

    async def index_add(self, key: str, member: str, expires_at: float) -> None:
        item = self._indexes.get(key)
        # Expired members go at every 256th add (not every add: the index of every session
        # may hold 100,000) and whenever the index is read.
        members = self._index(key) if item is None or len(item[0]) % 256 == 0 else item[0]
        members[member] = expires_at
        last = max(expires_at, item[2]) if item else expires_at
        self._indexes[key] = (members, last - time.time(), last)

    async def index_members(self, key: str) -> list[str]:
        return sorted(self._index(key))

    async def index_remove(self, key: str, *members: str) -> None:
        kept = self._index(key)
        for member in members:
            kept.pop(member, None)
        if not kept:
            self._indexes.pop(key, None)

    @asynccontextmanager
    async def lock(self, key: str, ttl: float) -> AsyncIterator[bool]:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            yield True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._items.clear()
        self._indexes.clear()
