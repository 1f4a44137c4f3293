"""Prometheus metrics, owned by the app (a private registry, no global state).

Labels are bounded: routes are the configured ones (or the proxy's own endpoint names),
statuses are HTTP codes, reasons are exception class names; never raw methods or paths.
With several workers, prometheus-client's multiprocess mode aggregates every process.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from .errors import ProxyError
from .session.backend import Backend

T = TypeVar("T")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("azp_requests", "Requests by route and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("azp_request_duration_seconds", "Request duration",
                                 ["route"], buckets=_BUCKETS, registry=r)
        self.logins = Counter("azp_logins", "Logins by result (started, completed, failed) "
                              "and reason", ["result", "reason"], registry=r)
        self.refreshes = Counter("azp_token_refreshes", "Token refreshes by result",
                                 ["result"], registry=r)
        self.graph_calls = Counter("azp_graph_calls", "Microsoft Graph calls by result",
                                   ["result"], registry=r)
        self.upstream_errors = Counter("azp_upstream_errors", "Upstream errors by kind",
                                       ["route", "kind"], registry=r)
        self.store_ops = Counter("azp_session_store_operations", "Session store operations",
                                 ["op"], registry=r)
        self.store_errors = Counter("azp_session_store_errors", "Session store failures",
                                    ["op"], registry=r)
        self.jwks_refreshes = Counter("azp_jwks_refreshes", "JWKS fetches by result",
                                      ["result"], registry=r)
        # Bounded: routes are configured and statuses are HTTP codes.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        """One request. The labelled children are looked up once per (route, status)."""
        key = (route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(route, str(status)),
                                              self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    # oidc/contracts.IdPMetrics: how the Entra client counts without importing this module.
    def jwks_fetched(self, result: str) -> None:
        self.jwks_refreshes.labels(result).inc()

    def token_refreshed(self, result: str) -> None:
        self.refreshes.labels(result).inc()

    def graph_called(self, result: str) -> None:
        self.graph_calls.labels(result).inc()

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def reason(error: BaseException) -> str:
    return type(error).__name__ if isinstance(error, ProxyError) else "Unexpected"


class CountingBackend:
    """A session-store backend that counts its operations and failures."""

    def __init__(self, backend: Backend, metrics: Metrics) -> None:
        self._backend = backend
        self._metrics = metrics

    async def _run(self, op: str, call: Awaitable[T]) -> T:
        self._metrics.store_ops.labels(op).inc()
        try:
            return await call
        except ProxyError:
            self._metrics.store_errors.labels(op).inc()
            raise

    async def get(self, key: str) -> bytes | None:
        return await self._run("get", self._backend.get(key))

    async def set(self, key: str, value: bytes, ttl: float, *, existing: bool = False,
                  unchanged: bytes | None = None) -> None:
        await self._run("set", self._backend.set(key, value, ttl, existing=existing,
                                                 unchanged=unchanged))

    async def delete(self, *keys: str) -> None:
        await self._run("delete", self._backend.delete(*keys))

    async def add_to_set(self, key: str, member: str, ttl: float) -> None:
        await self._run("add_to_set", self._backend.add_to_set(key, member, ttl))

    async def remove_from_set(self, key: str, member: str) -> None:
        await self._run("remove_from_set", self._backend.remove_from_set(key, member))

    async def pop_set(self, key: str) -> list[str]:
        return await self._run("pop_set", self._backend.pop_set(key))

    async def index_add(self, key: str, member: str, expires_at: float) -> None:
        await self._run("index_add", self._backend.index_add(key, member, expires_at))

    async def index_members(self, key: str) -> list[str]:
        return await self._run("index_members", self._backend.index_members(key))

    async def index_remove(self, key: str, *members: str) -> None:
        await self._run("index_remove", self._backend.index_remove(key, *members))

    def lock(self, key: str, ttl: float) -> AbstractAsyncContextManager[bool]:
        self._metrics.store_ops.labels("lock").inc()
        return self._backend.lock(key, ttl)

    async def ping(self) -> None:
        await self._run("ping", self._backend.ping())

    async def close(self) -> None:
        await self._backend.close()


async def serve(metrics: Metrics, listen: str,
                routes: Sequence[web.RouteDef] = ()) -> AsyncIterator[None]:
    """Run /metrics on its own listener (never on the public port), with `routes` (the
    admin endpoints: proxy/admin.py)."""
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/metrics", handler)
    app.router.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]") or None, int(port), reuse_port=True).start()
    yield
    await runner.cleanup()
