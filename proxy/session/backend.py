"""What a server-side store needs from its storage: bytes by key with a TTL, sets, a lock."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Backend(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, *keys: str) -> None: ...

    async def add_to_set(self, key: str, member: str, ttl: float) -> None: ...

    async def pop_set(self, key: str) -> list[str]:
        """Return and delete every member of a set."""

    def lock(self, key: str, ttl: float) -> AbstractAsyncContextManager[bool]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
