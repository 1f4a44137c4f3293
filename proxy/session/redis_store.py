"""The `redis` backend: standalone (redis://, rediss://, ACL users), Sentinel or Cluster,
all through redis-py's own asyncio clients. Every Redis failure becomes StoreUnavailable."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
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
# Compare-and-set: a rewrite of a record read earlier, only if nobody rewrote it since.
_SET_IF_UNCHANGED = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                     "return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) end")
# An index is a sorted set scored by each member's expiry: add, drop the expired, and let the
# key expire with its last member. One key per script: Cluster routes it to that key's slot.
_INDEX_ADD = """
redis.call('zadd', KEYS[1], ARGV[1], ARGV[2])
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[3])
local last = redis.call('zrange', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('pexpireat', KEYS[1], math.ceil(tonumber(last[2]) * 1000))
end
"""
_TIMEOUT = 2.0  # seconds per Redis socket operation: fail closed fast rather than hang
CALL_BUDGET = 5.0  # seconds for one store call, retries included
MAX_READS = 2  # batched reads (MGETs) in flight at once, per process
CLOSE_GRACE = 1.0  # seconds close() lets reads in flight finish
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
        # Reads waiting to be sent, by key: sent together as one MGET. At most MAX_READS
        # MGETs are out at once; reads asked for meanwhile wait for the next one, so a
        # batch grows with the load (one redis-py call serves dozens of requests) and an
        # idle proxy still sends a lone read at the end of the current loop turn.
        self._pending: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # of the batch being gathered
        self._asked = 0.0  # when its first read was asked for (loop time)
        self._scheduled = False
        self._closed = False
        self._fetches: set[asyncio.Task[None]] = set()
        self._mget = "mget_nonatomic" if isinstance(client, RedisCluster) else "mget"

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def _call(self, method: str, *args: Any, deadline: float | None = None,
                    **kwargs: Any) -> Any:
        try:
            # One budget for the whole call: redis-py's retries nest (handshake inside
            # command), and a hung Redis must fail a request in seconds, not twenty.
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + CALL_BUDGET
            async with asyncio.timeout_at(deadline):
                return await getattr(self._redis, method)(*args, **kwargs)
        except (TimeoutError, RedisError, RedisClusterException, OSError):
            # RedisClusterException ("cannot be connected") is not a RedisError.
            raise StoreUnavailable(UNAVAILABLE) from None

    async def get(self, key: str) -> bytes | None:
        """Every read goes to Redis (nothing is cached), batched with the other reads
        waiting at that moment into one MGET: one round trip and one redis-py call for all
        of them. Under load that is most of the Redis store's cost."""
        if self._closed:  # a retired store (config reload) whose requests linger
            raise StoreUnavailable(UNAVAILABLE)
        pending = self._pending
        loop = self._loop
        if not pending or loop is None:  # the first read of a batch (get_running_loop
            loop = self._loop = asyncio.get_running_loop()  # is a system call on 3.11)
            self._asked = loop.time()  # the batch's budget runs from its first read
        waiter: asyncio.Future[bytes | None] = loop.create_future()
        waiters = pending.get(key)  # one future per caller: a cancelled request cancels
        if waiters is None:  # only its own
            pending[key] = [waiter]
        else:
            waiters.append(waiter)
        if not self._scheduled and len(self._fetches) < MAX_READS:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await waiter

    def _flush(self) -> None:
        self._scheduled = False
        if self._closed or not self._pending or len(self._fetches) >= MAX_READS:
            return  # sent when a read in flight comes back
        batch, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._fetch(batch, self._asked + CALL_BUDGET))
        self._fetches.add(task)
        task.add_done_callback(self._fetched)

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._fetches.discard(task)
        if self._pending and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    async def _fetch(self, batch: dict[str, list[asyncio.Future[bytes | None]]],
                     deadline: float) -> None:
        keys = list(batch)
        try:
            # A batch that queued behind busy MGETs has already spent part of its budget:
            # no read waits longer than CALL_BUDGET in all, queued or not.
            values = await self._call(self._mget, [self._prefix + key for key in keys],
                                      deadline=deadline)
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

    async def set(self, key: str, value: bytes, ttl: float, *, existing: bool = False,
                  unchanged: bytes | None = None) -> None:
        px = max(1, int(ttl * 1000))
        if unchanged is not None:
            await self._call("eval", _SET_IF_UNCHANGED, 1, self._key(key), unchanged, value, px)
            return
        await self._call("set", self._key(key), value, px=px, xx=existing)

    async def delete(self, *keys: str) -> None:
        for key in keys:  # one key per call: Cluster keeps them in different slots
            await self._call("delete", self._key(key))

    async def add_to_set(self, key: str, member: str, ttl: float) -> None:
        await self._call("sadd", self._key(key), member)
        await self._call("pexpire", self._key(key), max(1, int(ttl * 1000)))

    async def remove_from_set(self, key: str, member: str) -> None:
        await self._call("srem", self._key(key), member)

    async def pop_set(self, key: str) -> list[str]:
        members = await self._call("smembers", self._key(key))
        await self._call("delete", self._key(key))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def index_add(self, key: str, member: str, expires_at: float) -> None:
        await self._call("eval", _INDEX_ADD, 1, self._key(key), repr(expires_at), member,
                         repr(time.time()))

    async def index_members(self, key: str) -> list[str]:
        members = await self._call("zrangebyscore", self._key(key), f"({time.time()!r}",
                                   "+inf")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def index_remove(self, key: str, *members: str) -> None:
        if members:
            await self._call("zrem", self._key(key), *members)

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
        # Nothing may open a connection after this: reads still queued fail at once, reads
        # out get a moment to finish (cancelled if Redis hangs), then the pool closes. A
        # read still running after aclose() would reconnect and leave a socket open.
        self._closed = True
        pending, self._pending = self._pending, {}
        for waiters in pending.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(StoreUnavailable(UNAVAILABLE))
        fetches = list(self._fetches)
        if fetches:
            _, stuck = await asyncio.wait(fetches, timeout=CLOSE_GRACE)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*fetches, return_exceptions=True)
        try:
            await self._redis.aclose()
            # Sentinel: the clients that asked the sentinels for the master are the
            # Sentinel object's own; master_for's client does not close them.
            pool = getattr(self._redis, "connection_pool", None)
            manager = getattr(pool, "sentinel_manager", None)
            if manager is not None:
                await manager.aclose()
        except (RedisError, OSError):
            pass
