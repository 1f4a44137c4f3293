"""Redis sessions across processes, restarts, outages, a Cluster and a Sentinel failover."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ALICE, StackFactory, free_port, wait_ready
from tests.redis_servers import (
    PERSISTENT,
    RedisCluster,
    RedisSentinelSet,
    RedisServer,
    StartRedis,
)
from tests.support.proxy_toml import write_proxy_toml


def redis_config(url: str, **extra: Any) -> dict[str, Any]:
    return {"session": {"store": "redis", "redis_url": url, **extra}}


async def status(client: aiohttp.ClientSession, url: str) -> int:
    async with client.get(url) as resp:
        await resp.read()
        return resp.status


async def test_two_proxy_processes_share_sessions_and_survive_restarts(
        make_stack: StackFactory, start_redis: StartRedis, tmp_path: Path) -> None:
    redis_server = start_redis(RedisServer(tmp_path / "redis"))
    stack = await make_stack(redis_config(redis_server.url))
    await stack.login()
    cookie = next(c.value for c in stack.client.cookie_jar if c.key == "azp_session")
    port = free_port()
    config = write_proxy_toml(tmp_path / "proxy.toml", port, stack.idp, stack.upstream, {
        "server": {"public_url": stack.url}, **redis_config(redis_server.url)})
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    other = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(other)
        async with aiohttp.ClientSession() as client:
            headers = {"Cookie": f"azp_session={cookie}"}
            async with client.get(other + "/oauth2/userinfo", headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["preferred_username"] == ALICE
            proc.terminate()
            proc.wait(timeout=10)
            proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await wait_ready(other)
            async with client.get(other + "/x", headers=headers) as resp:
                assert resp.status == 200  # a restarted proxy keeps Redis sessions
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_redis_down_fails_closed_and_recovers_without_relogin(
        make_stack: StackFactory, start_redis: StartRedis, tmp_path: Path) -> None:
    # Persistence on: "no session is lost that Redis kept" across its restart.
    redis_server = start_redis(RedisServer(tmp_path / "aof", extra_config=PERSISTENT))
    await _outage_and_recovery(make_stack, redis_server)


async def _outage_and_recovery(make_stack: StackFactory, redis_server: RedisServer) -> None:
    stack = await make_stack(redis_config(redis_server.url))
    await stack.login()
    assert await status(stack.client, stack.url + "/x") == 200
    await asyncio.to_thread(redis_server.stop)
    async with stack.client.get(stack.url + "/x") as resp:
        assert resp.status == 503
        body = await resp.json()
        assert "Redis" in body["message"] and body["request_id"]
    assert await status(stack.client, stack.url + "/ready") == 503
    async with stack.client.get(stack.url + "/x", headers={"Accept": "text/html"},
                                allow_redirects=False) as resp:
        assert resp.status == 503  # never an anonymous redirect into a new login
    await asyncio.to_thread(redis_server.start)
    assert await status(stack.client, stack.url + "/x") == 200
    assert await status(stack.client, stack.url + "/ready") == 200


async def test_acl_user_over_redis_url(make_stack: StackFactory, start_redis: StartRedis,
                                       tmp_path: Path) -> None:
    server = start_redis(RedisServer(tmp_path / "acl", acl_user=("proxy", "p@ss/word")))
    stack = await make_stack(redis_config(server.authed_url))
    assert (await stack.login()).status == 200
    assert await status(stack.client, stack.url + "/x") == 200
    wrong = await make_stack(redis_config(server.url))  # no credentials
    async with wrong.client.get(wrong.url + "/ready") as resp:
        assert resp.status == 503


async def test_redis_cluster(make_stack: StackFactory, start_redis: StartRedis,
                             tmp_path: Path) -> None:
    redis_cluster = start_redis(RedisCluster(tmp_path / "redis-cluster"))
    admin = f"http://127.0.0.1:{free_port()}"
    stack = await make_stack({**redis_config(redis_cluster.url, redis_cluster=True),
                              "server": {"metrics_listen": admin.removeprefix("http://")}})
    browsers = [stack.new_browser() for _ in range(10)]
    try:
        for browser in browsers:  # ten sessions spread over the slots
            assert (await stack.login(client=browser)).status == 200
        for browser in browsers:
            assert await status(browser, stack.url + "/x") == 200
        async with browsers[0].post(stack.url + "/oauth2/sign_out") as resp:
            assert resp.status == 200
        assert await status(browsers[0], stack.url + "/oauth2/userinfo") == 401
        # Administration: its indexes and reads are one key per operation (any slot).
        async with browsers[0].get(admin + "/admin/sessions", params={"user": ALICE}) as resp:
            assert len((await resp.json())["sessions"]) == 9  # the signed-out one pruned
        async with browsers[0].post(admin + "/admin/sessions/revoke",
                                    json={"user": ALICE}) as resp:
            assert (await resp.json())["revoked"] == 9
        for browser in browsers[1:]:
            assert await status(browser, stack.url + "/oauth2/userinfo") == 401
    finally:
        for browser in browsers:
            await browser.close()


async def test_sentinel_failover_loses_no_session(make_stack: StackFactory,
                                                  start_redis: StartRedis,
                                                  tmp_path: Path) -> None:
    redis_sentinel = start_redis(RedisSentinelSet(tmp_path / "redis-sentinel"))
    sentinels = [f"{host}:{port}" for host, port in redis_sentinel.sentinels]
    stack = await make_stack(redis_config("redis://127.0.0.1:6379/0",
                                          redis_sentinel_master=redis_sentinel.master_name,
                                          redis_sentinels=sentinels))
    await stack.login()
    assert await status(stack.client, stack.url + "/x") == 200
    await asyncio.sleep(0.5)  # replication to the replica is asynchronous
    await asyncio.to_thread(redis_sentinel.failover)
    for _ in range(50):  # the client finds the new master by itself
        if await status(stack.client, stack.url + "/x") == 200:
            break
        await asyncio.sleep(0.2)
    assert await status(stack.client, stack.url + "/oauth2/userinfo") == 200
    second = stack.new_browser()
    async with second:
        assert (await stack.login(client=second)).status == 200  # new sessions are written
