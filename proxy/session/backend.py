"""What a server-side store needs from its storage: bytes by key with a TTL, sets, indexes
(members that expire one by one), a lock."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Backend(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float, *, existing: bool = False,
                  unchanged: bytes | None = None) -> None:
        """Store `value`; with `existing`, only if the key still exists (never resurrects a
        record deleted meanwhile, e.g. a revoked session rewritten after a refresh); with
        `unchanged`, only if it still holds exactly those bytes (a write of a copy read
        earlier never undoes another's write since)."""

    async def delete(self, *keys: str) -> None: ...

    async def add_to_set(self, key: str, member: str, ttl: float) -> None: ...

    async def remove_from_set(self, key: str, member: str) -> None: ...

    async def pop_set(self, key: str) -> list[str]:
        """Return and delete every member of a set."""

    async def index_add(self, key: str, member: str, expires_at: float) -> None:
        """Add `member` until `expires_at` (epoch seconds); members past theirs are dropped,
        and the index itself expires with its last member: it never outgrows its sessions."""

    async def index_members(self, key: str) -> list[str]:
        """The members not yet past their expiry."""

    async def index_remove(self, key: str, *members: str) -> None: ...

    def lock(self, key: str, ttl: float) -> AbstractAsyncContextManager[bool]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
