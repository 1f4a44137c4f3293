"""Build the configured session store."""

from __future__ import annotations

from collections.abc import Callable

from ..config import SessionConfig
from .backend import Backend
from .cookie_store import CookieStore
from .memory import MemoryBackend
from .redis_store import RedisBackend, connect
from .server_store import ServerSideStore
from .store import SessionStore


def build_store(config: SessionConfig,
                wrap: Callable[[Backend], Backend] = lambda b: b, app: str = "") -> SessionStore:
    """The configured store for application `app` (its client_id: salts and keys are
    derived from it); `wrap` decorates a server-side backend (metrics)."""
    if config.store == "memory":
        return ServerSideStore(config, wrap(MemoryBackend(config.memory_max_sessions)), app)
    if config.store == "redis":
        return ServerSideStore(config, wrap(RedisBackend(connect(config))), app)
    return CookieStore(config, app)
