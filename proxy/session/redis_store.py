"""The `redis` backend: standalone (redis://, rediss://, ACL users), Sentinel or Cluster,
all through redis-py's own asyncio clients. Every Redis failure becomes StoreUnavailable."""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException, RedisError
from yarl import URL

from ..config import SessionConfig
from ..errors import StoreUnavailable

# Compare-and-delete: only the holder releases the refresh lock.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"
_TIMEOUT = 2.0  # seconds per Redis socket operation: fail closed fast rather than hang
CALL_BUDGET = 5.0  # seconds for one store call, retries included
UNAVAILABLE = "The session store (Redis) is unavailable; please retry shortly."
log = logging.getLogger("proxy.session")


def _common(config: SessionConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": _TIMEOUT, "socket_connect_timeout": _TIMEOUT,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "health_check_interval": 15,
    }
    if config.redis_ca_file:
        kwargs["ssl_ca_certs"] = config.redis_ca_file
    return kwargs


def connect(config: SessionConfig) -> Any:
    """A redis-py asyncio client for the configured topology (no I/O until first use)."""
    url = config.redis_url.reveal()
    kwargs = _common(config)
    if config.redis_sentinel_master:
        parsed = URL(url)
        hosts = [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in config.redis_sentinels]
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": _TIMEOUT,
                                           "socket_connect_timeout": _TIMEOUT}
        if config.redis_sentinel_password:
            sentinel_kwargs["password"] = config.redis_sentinel_password.reveal()
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs,  # type: ignore[no-untyped-call]
                            **kwargs)
        db = int(parsed.path.strip("/") or 0)
        return sentinel.master_for(config.redis_sentinel_master, username=parsed.user,
                                   password=parsed.password, db=db,
                                   ssl=parsed.scheme == "rediss")
    if config.redis_cluster:
        kwargs.pop("health_check_interval")
        return RedisCluster.from_url(url, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


class RedisBackend:
    def __init__(self, client: Any, prefix: str = "azp:") -> None:
        self._redis = client
        self._prefix = prefix
        self._local: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())
        # Reads asked for in one turn of the event loop, by key: sent as one MGET.
        self._pending: dict[str, list[asyncio.Future[bytes | None]]] | None = None
        self._fetches: set[asyncio.Task[None]] = set()
        self._mget = "mget_nonatomic" if isinstance(client, RedisCluster) else "mget"

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            # One budget for the whole call: redis-py's retries nest (handshake inside
            # command), and a hung Redis must fail a request in seconds, not twenty.
            async with asyncio.timeout(CALL_BUDGET):
                return await getattr(self._redis, method)(*args, **kwargs)
        except (TimeoutError, RedisError, RedisClusterException, OSError):
            # RedisClusterException ("cannot be connected") is not a RedisError.
            raise StoreUnavailable(UNAVAILABLE) from None

    async def get(self, key: str) -> bytes | None:
        """Every read goes to Redis (nothing is cached), but the reads that requests ask for
        in the same turn of the event loop share one MGET: one round trip and one redis-py
        call for all of them. Under load that is most of the Redis store's cost."""
        loop = asyncio.get_running_loop()
        pending = self._pending
        if pending is None:
            pending = self._pending = {}
            loop.call_soon(self._flush)
        waiter: asyncio.Future[bytes | None] = loop.create_future()
        pending.setdefault(self._key(key), []).append(waiter)  # one future per caller:
        return await waiter  # a cancelled request cancels only its own

    def _flush(self) -> None:
        batch, self._pending = self._pending or {}, None
        task = asyncio.ensure_future(self._fetch(batch))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _fetch(self, batch: dict[str, list[asyncio.Future[bytes | None]]]) -> None:
        keys = list(batch)
        try:
            values = await self._call(self._mget, keys)
        except BaseException as exc:
            # Whatever went wrong, every waiter gets an answer (its own exception): a read
            # left pending would hang its request, as aiohttp has no handler timeout.
            if not isinstance(exc, StoreUnavailable | asyncio.CancelledError):
                # The type only: a client library's message may quote its connection URL.
                log.error("session store read failed: %s", type(exc).__name__)
            for waiters in batch.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(StoreUnavailable(UNAVAILABLE))
            if not isinstance(exc, Exception):
                raise
            return
        for key, value in zip(keys, values, strict=True):
            for waiter in batch[key]:
                if not waiter.done():
                    waiter.set_result(bytes(value) if value is not None else None)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._call("set", self._key(key), value, px=max(1, int(ttl * 1000)))

    async def delete(self, *keys: str) -> None:
        for key in keys:  # one key per call: Cluster keeps them in different slots
            await self._call("delete", self._key(key))

    async def add_to_set(self, key: str, member: str, ttl: float) -> None:
        await self._call("sadd", self._key(key), member)
        await self._call("pexpire", self._key(key), max(1, int(ttl * 1000)))

    async def pop_set(self, key: str) -> list[str]:
        members = await self._call("smembers", self._key(key))
        await self._call("delete", self._key(key))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    @asynccontextmanager
    async def lock(self, key: str, ttl: float) -> AsyncIterator[bool]:
        # Requests in this process queue on a local lock; other processes and replicas are
        # kept out by SET NX, and simply carry on with the tokens they have.
        local = self._local.get(key)
        if local is None:
            local = self._local[key] = asyncio.Lock()
        async with local:
            token = secrets.token_hex(8)
            name = self._key("lock:" + key)
            acquired = await self._call("set", name, token, nx=True, px=int(ttl * 1000))
            try:
                yield bool(acquired)
            finally:
                if acquired:
                    await self._call("eval", _RELEASE, 1, name, token)

    async def ping(self) -> None:
        await self._call("ping")

    async def close(self) -> None:
        try:
            await self._redis.aclose()
        except (RedisError, OSError):
            pass
