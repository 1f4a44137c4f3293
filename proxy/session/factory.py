"""Build the configured session store."""

from __future__ import annotations

from ..config import SessionConfig
from .cookie_store import CookieStore
from .memory import MemoryBackend
from .redis_store import RedisBackend, connect
from .server_store import ServerSideStore
from .store import SessionStore


def build_store(config: SessionConfig) -> SessionStore:
    if config.store == "memory":
        return ServerSideStore(config, MemoryBackend(config.memory_max_sessions))
    if config.store == "redis":
        return ServerSideStore(config, RedisBackend(connect(config)))
    return CookieStore(config)
