"""The session indexes (`sessions list|revoke`) under a user who signs in again and again in
one browser (every step-up sign-in does, and so can a script), over real sockets with
Redis: each sign-in replaces the browser's session, and must replace its index members too,
or every index (and the set of the Entra sign-in session, for front-channel logout) grows
by one member per sign-in. And a session ended in one store is never read by another."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from yarl import URL

from tests.attacks.harness import tally
from tests.conftest import ALICE, Browsers, StackFactory

SIGN_INS = 12


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    made = redis.Redis.from_url(redis_url)
    yield made
    await made.aclose()


async def members(client: redis.Redis, cookie: str) -> dict[str, int]:
    """Members of this proxy's session indexes and sid sets, summed by kind."""
    found: dict[str, int] = {}
    async for key in client.scan_iter(f"azp:*/{cookie}:*"):
        name = key.decode().rsplit(f"/{cookie}:", 1)[1]
        kind = name.split(":", 1)[0]
        if kind in ("all", "u", "oid"):
            found[kind] = found.get(kind, 0) + await client.zcard(key)
        elif kind == "sid":  # the Entra sign-in session's set (front-channel logout)
            found[kind] = found.get(kind, 0) + await client.scard(key)
    return found


async def test_signing_in_again_and_again_keeps_one_member_per_index(
        make_stack: StackFactory, redis_url: str, client: redis.Redis) -> None:
    cookie = "azp_" + secrets.token_hex(4)
    stack = await make_stack({"session": {"store": "redis", "redis_url": redis_url,
                                          "cookie_name": cookie}})
    stack.mock.auto_user = ALICE
    for _ in range(SIGN_INS):
        async with stack.client.get(stack.url + "/oauth2/start?rd=/") as resp:
            assert resp.status == 200
    grown = await members(client, cookie)
    one_each = {"all": 1, "u": 1, "oid": 1, "sid": 1}
    tally("session-index-growth", refused=grown == one_each, crashed=False,
          reached=max(grown.values(), default=0) > 1)
    assert grown == one_each
    async with stack.client.get(stack.url + "/oauth2/sign_out") as resp:
        assert resp.status == 200
    assert await members(client, cookie) == {}  # signed out: the indexes went with it


async def test_a_revoked_session_has_no_cookie_store_to_fall_back_on(
        make_stack: StackFactory, redis_url: str, browsers: Browsers) -> None:
    """One cookie name and secret, a store moved from cookie to Redis and back (or replicas
    of both): a session ended in Redis is no cookie-store session, nor the reverse."""
    cookie = "azp_" + secrets.token_hex(4)
    redis_store = {"store": "redis", "redis_url": redis_url, "cookie_name": cookie}
    in_redis = await make_stack({"session": redis_store})
    in_cookies = await make_stack({"session": {"store": "cookie", "cookie_name": cookie}})
    for signed, other in ((in_redis, in_cookies), (in_cookies, in_redis)):
        browser = browsers()
        assert (await signed.login(ALICE, client=browser)).status == 200
        jar = browser.cookie_jar.filter_cookies(URL(signed.url))
        header = {"Cookie": "; ".join(f"{k}={m.value}" for k, m in jar.items())}
        async with browser.get(signed.url + "/oauth2/sign_out") as resp:  # record deleted
            assert resp.status == 200
        async with browser.get(signed.url + "/oauth2/userinfo", headers=header) as resp:
            assert resp.status == (200 if signed is in_cookies else 401)  # (no revocation)
        async with browser.get(other.url + "/oauth2/userinfo", headers=header) as resp:
            crossed = resp.status == 200
            tally("revoked-session-fallback", refused=resp.status == 401, crashed=False,
                  reached=crossed)
            assert resp.status == 401
