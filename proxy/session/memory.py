"""The `memory` backend: one process only (cachetools, bounded, per-item expiry)."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cachetools import TLRUCache


def _expiry(_key: str, value: tuple[object, float], now: float) -> float:
    return now + value[1]


class MemoryBackend:
    def __init__(self, max_items: int) -> None:
        self._items: TLRUCache[str, tuple[object, float]] = TLRUCache(
            maxsize=max_items, ttu=_expiry, timer=time.monotonic)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        return item[0] if item is not None and isinstance(item[0], bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._items[key] = (value, ttl)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._items.pop(key, None)

    async def add_to_set(self, key: str, member: str, ttl: float) -> None:
        item = self._items.get(key)
        members = item[0] if item is not None and isinstance(item[0], frozenset) else frozenset()
        self._items[key] = (members | {member}, ttl)

    async def pop_set(self, key: str) -> list[str]:
        item = self._items.pop(key, None)
        return sorted(item[0]) if item is not None and isinstance(item[0], frozenset) else []

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
