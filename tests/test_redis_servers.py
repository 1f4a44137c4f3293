"""The Redis topologies of tests/redis_servers.py, exercised with redis-py's asyncio clients."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError

from tests.redis_servers import (
    RedisCluster,
    RedisNotInstalledError,
    RedisSentinelSet,
    RedisServer,
    RedisStartError,
    _started,
    require_redis_binaries,
)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


async def eventually(op: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    """Retry ``op`` on connection errors (a failover in progress) until it succeeds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await op()
        except ConnectionError:  # includes MasterNotFoundError
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


# --------------------------------------------------------------------------- standalone


async def test_standalone_set_get(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.port != 6379
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await client.set("greeting", "hello", ex=60)
        assert await client.get("greeting") == b"hello"
        assert await client.config_get("save") == {"save": ""}
        assert await client.config_get("appendonly") == {"appendonly": "no"}
        assert await client.config_get("bind") == {"bind": "127.0.0.1"}
    finally:
        await client.aclose()


async def test_standalone_down_then_back_on_same_port(redis_server: RedisServer) -> None:
    port = redis_server.port
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.set("k", "v")
        redis_server.stop()
        assert port_is_free(port)
        with pytest.raises(ConnectionError):
            await client.get("k")
        with pytest.raises(ConnectionError):
            await client.set("k", "v2")

        redis_server.start()
        assert redis_server.port == port
        assert await client.get("k") is None  # same client reconnects; no persistence
        await client.set("k", "v3")
        assert await client.get("k") == b"v3"

        redis_server.kill()  # a crash rather than a clean shutdown
        with pytest.raises(ConnectionError):
            await client.ping()
        redis_server.start()
        assert await client.ping()
    finally:
        await client.aclose()


async def test_password_required(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="s3cret/pw")
    server.start()
    anonymous = aioredis.Redis.from_url(server.url)
    wrong = aioredis.Redis.from_url(f"redis://:nope@127.0.0.1:{server.port}/0")
    good = aioredis.Redis.from_url(server.authed_url)
    try:
        assert "s3cret%2Fpw" in server.authed_url
        with pytest.raises(AuthenticationError):
            await anonymous.get("k")
        with pytest.raises(AuthenticationError):
            await wrong.get("k")
        assert await good.set("k", "v")
        assert await good.get("k") == b"v"
    finally:
        for client in (anonymous, wrong, good):
            await client.aclose()
        server.stop()


async def test_acl_user(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, acl_user=("proxy", "pa:ss@word"))
    server.start()
    anonymous = aioredis.Redis.from_url(server.url)
    wrong = aioredis.Redis.from_url(f"redis://proxy:nope@127.0.0.1:{server.port}/0")
    as_user = aioredis.Redis.from_url(f"redis://proxy:pa%3Ass%40word@127.0.0.1:{server.port}/0")
    authed = aioredis.Redis.from_url(server.authed_url)
    try:
        with pytest.raises(AuthenticationError):
            await anonymous.get("k")
        with pytest.raises(AuthenticationError):
            await wrong.get("k")
        assert await as_user.set("k", "v")
        assert await authed.get("k") == b"v"
        assert await as_user.acl_whoami() == "proxy"
    finally:
        for client in (anonymous, wrong, as_user, authed):
            await client.aclose()
        server.stop()


async def test_persistence_is_opt_in(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra_config=["appendonly yes", "appendfsync always"])
    server.start()
    # from_url() clients do not retry by default: the first command on a pooled connection
    # that the restart closed would fail. One retry (on a fresh connection) is enough.
    client = aioredis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 1))
    try:
        await client.set("session:1", "alice")
        server.stop()
        server.start()
        assert await client.get("session:1") == b"alice"
    finally:
        await client.aclose()
        server.stop()


def test_start_failure_reports_log_tail(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra_config=["no-such-directive yes"], start_timeout=5)
    with pytest.raises(RedisStartError) as info:
        server.start()
    assert "exited with status" in str(info.value)
    assert "no-such-directive" in str(info.value)  # quoted from redis.log
    assert not server.running


def test_port_lost_to_someone_else_is_retried(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        taken = server.port
        server.start()
        try:
            assert server.port != taken
            assert server.command("PING") == "PONG"
        finally:
            server.stop()


def test_missing_binary_fails_with_install_hint(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisNotInstalledError, match="apt-get install redis-server"):
        require_redis_binaries()
    server = RedisServer(tmp_path)
    # What the fixtures do: a failure (not a skip) carrying the hint.
    with pytest.raises(pytest.fail.Exception, match="apt-get install redis-server"):
        _started(server.start, server.stop)


def test_fixture_teardown_kills_servers_when_the_test_fails(tmp_path: Path) -> None:
    """Run a failing test in a child pytest and check that no redis process outlives it."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        from pathlib import Path

        from tests.redis_servers import RedisCluster, RedisServer, start_redis  # noqa: F401

        def test_fails(start_redis, tmp_path):
            redis_server = start_redis(RedisServer(tmp_path / "redis"))
            redis_cluster = start_redis(RedisCluster(tmp_path / "redis-cluster"))
            pids = [redis_server.process.pid] + [n.process.pid for n in redis_cluster.nodes]
            Path("pids.txt").write_text(" ".join(map(str, pids)))
            raise AssertionError("boom")
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90, check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "boom" in result.stdout
    pids = [int(p) for p in (tmp_path / "pids.txt").read_text().split()]
    assert len(pids) == 4
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# --------------------------------------------------------------------------- cluster


async def test_cluster_spreads_keys_over_all_masters(redis_cluster: RedisCluster) -> None:
    client = AsyncRedisCluster.from_url(redis_cluster.url)
    try:
        keys = [f"session:{i}" for i in range(50)]
        for key in keys:
            assert await client.set(key, key.upper())
        for key in keys:
            assert await client.get(key) == key.upper().encode()
        owners = set()
        for key in keys:
            owner = client.get_node_from_key(key)
            assert owner is not None
            owners.add(owner.port)
        assert owners == {node.port for node in redis_cluster.nodes}
    finally:
        await client.aclose()
    counts = [node.command("DBSIZE") for node in redis_cluster.nodes]
    assert sum(c for c in counts if isinstance(c, int)) == 50
    assert all(isinstance(c, int) and c > 0 for c in counts)


async def test_cluster_with_replicas_survives_restart(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path, replicas=1)
    cluster.start()
    try:
        assert len(cluster.nodes) == 6
        assert len(cluster.masters) == 3
        client = AsyncRedisCluster.from_url(cluster.url)
        try:
            assert await client.set("a", "1")
            assert await client.get("a") == b"1"
            cluster.stop()
            assert all(port_is_free(n.port) for n in cluster.nodes)
            cluster.start()  # reloads nodes.conf; no re-create
            assert len(cluster.masters) == 3
            assert await eventually(lambda: client.set("a", "2"))
            assert await client.get("a") == b"2"
        finally:
            await client.aclose()
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- sentinel


async def test_sentinel_master_for_survives_failover(redis_sentinel: RedisSentinelSet) -> None:
    old_master, old_replica = redis_sentinel.master, redis_sentinel.replica
    sentinel = Sentinel(redis_sentinel.sentinels, socket_timeout=1.0)
    client = sentinel.master_for(redis_sentinel.master_name)
    try:
        assert await sentinel.discover_master(redis_sentinel.master_name) == old_master.address
        assert await client.set("session:1", "alice")
        assert await client.execute_command("WAIT", 1, 1000) == 1

        redis_sentinel.failover()

        assert redis_sentinel.master is old_replica
        assert redis_sentinel.replica is old_master and not old_master.running
        assert await eventually(lambda: client.get("session:1")) == b"alice"
        assert await client.set("session:2", "bob")
        assert await client.get("session:2") == b"bob"
        assert await sentinel.discover_master(redis_sentinel.master_name) == old_replica.address
    finally:
        await client.aclose()
        await sentinel.aclose()


async def test_sentinel_repeated_failover(redis_sentinel: RedisSentinelSet) -> None:
    first = redis_sentinel.master
    sentinel = Sentinel(redis_sentinel.sentinels, socket_timeout=1.0)
    client = sentinel.master_for(redis_sentinel.master_name)
    try:
        await client.set("k", "1")
        assert await client.execute_command("WAIT", 1, 1000) == 1
        redis_sentinel.failover(restart_old_master=True)
        assert redis_sentinel.replica is first and first.running
        assert await eventually(lambda: client.set("k", "2"))
        assert await client.execute_command("WAIT", 1, 1000) == 1

        redis_sentinel.failover()
        assert redis_sentinel.master is first
        assert await eventually(lambda: client.get("k")) == b"2"
        assert await client.incr("k") == 3  # the promoted replica takes writes
    finally:
        await client.aclose()
        await sentinel.aclose()
