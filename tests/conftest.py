"""Real sockets everywhere: the proxy, the mock Entra ID and a reflecting upstream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner
from pytest_aiohttp import AiohttpClient

from proxy.app import build_app
from proxy.config import Config
from proxy.config_load import from_dict
from proxy.mock_entra import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_ID,
    MockEntra,
    create_app,
)
from proxy.runner import ProxyRunner
from tests import echo_upstream, redis_servers
from tests.redis_servers import (
    PERSISTENT,
    RedisCluster,
    RedisSentinelSet,
    RedisServer,
    StartRedis,
)

ALICE = "alice@contoso.example"
SECRET = secrets.token_urlsafe(32)


class ProxyTestServer(TestServer):
    """TestServer with the runner `azure-auth-proxy run` serves with (proxy/runner.py)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return ProxyRunner(self.app, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def base_config(port: int, idp: str, upstream: str) -> dict[str, Any]:
    return {
        "server": {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        "azure": {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
                  "tenant_id": DEFAULT_TENANT_ID, "cloud_instance": idp + "/"},
        "session": {"secret": SECRET, "secure": False},
        "upstreams": [{"path": "/", "url": upstream, "public": ["^/healthz$"]}],
    }


@dataclass
class Stack:
    """One running proxy with its IdP and upstream, and a browser-like client."""

    mock: MockEntra
    config: Config
    url: str
    idp: str
    upstream: str
    client: aiohttp.ClientSession

    def new_browser(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def login(self, user: str = ALICE, client: aiohttp.ClientSession | None = None,
                    path: str = "/") -> aiohttp.ClientResponse:
        """Browse to `path` as `user` and follow the whole sign-in flow."""
        self.mock.auto_user = user
        async with (client or self.client).get(self.url + path, headers=HTML) as resp:
            await resp.read()
            return resp


HTML = {"Accept": "text/html,application/xhtml+xml"}
StackFactory = Callable[..., Awaitable[Stack]]
Browsers = Callable[[], aiohttp.ClientSession]


def port_of(stack: Stack) -> int:
    return int(stack.url.rsplit(":", 1)[1])


EntraTestClient = TestClient[web.Request, web.Application]


@pytest.fixture
def mock() -> MockEntra:
    """A fresh mock Entra ID for tests of the mock itself (a module may override it)."""
    return MockEntra()


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, mock: MockEntra) -> EntraTestClient:
    """A test client of the `mock` fixture's app, in process."""
    return await aiohttp_client(create_app(mock))


async def wait_ready(url: str, context: ssl.SSLContext | bool = True) -> None:
    """Wait up to 30 s for a spawned proxy's /ping: a process that spawns workers imports
    the app in each, which takes seconds on a loaded 2-core machine."""
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(connector=connector) as client:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientError):
                async with client.get(url + "/ping") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError("proxy did not start")


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """An aiohttp app served on a loopback port, for the block: its base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def mock_server() -> AsyncIterator[tuple[MockEntra, str]]:
    mock = MockEntra()
    async with served(create_app(mock)) as url:
        yield mock, url


@pytest.fixture
async def upstream_url() -> AsyncIterator[str]:
    async with served(echo_upstream.create_app()) as url:
        yield url


@pytest.fixture
async def make_stack(mock_server: tuple[MockEntra, str],
                     upstream_url: str) -> AsyncIterator[StackFactory]:
    mock, idp = mock_server
    started: list[tuple[TestServer, aiohttp.ClientSession]] = []

    async def factory(extra: dict[str, Any] | None = None) -> Stack:
        port = free_port()
        config = from_dict(deep_merge(base_config(port, idp, upstream_url), extra or {}))
        server = ProxyTestServer(build_app(config), host="127.0.0.1", port=port)
        await server.start_server()
        client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        started.append((server, client))
        return Stack(mock, config, f"http://127.0.0.1:{port}", idp, upstream_url, client)

    yield factory
    for server, client in started:
        await client.close()
        await server.close()


@pytest.fixture
async def stack(make_stack: StackFactory) -> Stack:
    return await make_stack()


@pytest.fixture
async def browsers() -> AsyncIterator[Browsers]:
    """A maker of fresh cookie jars (one per simulated browser), all closed after the test."""
    opened: list[aiohttp.ClientSession] = []

    def new() -> aiohttp.ClientSession:
        browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        opened.append(browser)
        return browser

    yield new
    for browser in opened:
        await browser.close()


def upstream_app() -> web.Application:
    return echo_upstream.create_app()


@pytest.fixture
def redis_url() -> str:
    """The Redis `make test` found or started (scripts/with-redis.sh); no Redis is a failure."""
    url = os.environ.get("PROXY_TEST_REDIS_URL", "")
    assert url, ("PROXY_TEST_REDIS_URL is not set: run the suite with `make test`, which finds "
                 "or starts a Redis (or install redis-server)")
    return url


# Real Redis topologies started from the redis-server binary: tests/redis_servers.py has the
# one start/stop fixture, start_redis (made visible to every test here); the plain shapes most
# tests want are made with it.
start_redis = redis_servers.start_redis


@pytest.fixture
def redis_server(start_redis: StartRedis, tmp_path: Path) -> RedisServer:
    """A standalone server (no auth, no persistence) for this test."""
    return start_redis(RedisServer(tmp_path / "redis"))


@pytest.fixture
def persistent_redis(start_redis: StartRedis, tmp_path: Path) -> RedisServer:
    """A standalone server that keeps what it acknowledged across stop/start (AOF, fsync
    always), for this test."""
    return start_redis(RedisServer(tmp_path / "redis", extra_config=PERSISTENT))


@pytest.fixture
def redis_cluster(start_redis: StartRedis, tmp_path: Path) -> RedisCluster:
    """A 3-master cluster (no replicas) for this test."""
    return start_redis(RedisCluster(tmp_path / "redis-cluster"))


@pytest.fixture
def redis_sentinel(start_redis: StartRedis, tmp_path: Path) -> RedisSentinelSet:
    """A master + replica + 3 sentinels for this test."""
    return start_redis(RedisSentinelSet(tmp_path / "redis-sentinel"))
