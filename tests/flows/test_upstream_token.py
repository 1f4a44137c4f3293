"""pass_authorization_header: the upstream gets `Authorization: Bearer <the user's access
token for its API>`, which it validates itself (pyjwt against the mock's keys), never the
browser's; the token lives in the server-side session and is refreshed ahead of expiry."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import redis.asyncio as redis

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.conftest import ALICE, Stack, StackFactory
from tests.support import token_upstream as support
from tests.support.entra_tokens import user_token
from tests.support.token_upstream import (
    API_ID,
    API_SCOPE,
    API_URI,
    JSON,
    TokenUpstream,
    api_grants,
    get,
    register_api,
    sign_in,
    token_config,
)

token_upstream = support.token_upstream
token_stack = support.token_stack
BOB = "bob@contoso.example"


@pytest.fixture
def stack(token_stack: Stack) -> Stack:
    return token_stack


async def test_upstream_validates_the_users_token_and_never_sees_the_browsers(
        stack: Stack, token_upstream: tuple[TokenUpstream, str]) -> None:
    upstream, upstream_url = token_upstream
    # A genuine token for the same API, for Bob: the upstream itself would accept it.
    bobs = await user_token(stack.mock, stack.idp, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
                            BOB, f"{API_URI}/{API_SCOPE}")
    assert upstream.validate(bobs, await upstream.keys())["preferred_username"] == BOB
    await sign_in(stack)
    status, body = await get(stack, Authorization=f"Bearer {bobs}")
    assert status == 200, body
    claims = body["claims"]
    assert claims["preferred_username"] == ALICE and claims["aud"] == API_ID
    assert claims["scp"] == API_SCOPE and claims["azp"] == DEFAULT_CLIENT_ID
    assert len(upstream.seen[-1]) == 1 and bobs not in upstream.seen[-1][0]
    # A public path of the route: no sign-in, and the browser's header is dropped as well.
    status, body = await get(stack, "/healthz", Authorization=f"Bearer {bobs}")
    assert status == 200 and body == {"authorization": []}


async def test_one_token_request_serves_the_session_until_it_is_due(stack: Stack) -> None:
    await sign_in(stack)
    first = [await get(stack) for _ in range(3)]
    assert all(status == 200 for status, _ in first)
    assert len({body["claims"]["uti"] for _, body in first}) == 1
    assert api_grants(stack.mock) == 1


async def test_concurrent_first_requests_ask_entra_once(stack: Stack) -> None:
    await sign_in(stack)
    answers = await asyncio.gather(*(get(stack) for _ in range(8)))
    assert [status for status, _ in answers] == [200] * 8
    assert api_grants(stack.mock) == 1  # one request per session at a time; the rest reuse it


async def test_a_token_due_for_refresh_is_replaced_before_it_expires(
        make_stack: StackFactory, token_upstream: tuple[TokenUpstream, str]) -> None:
    # The API's tokens live 200 s, inside the 300 s refresh window: each use renews it.
    stack = await make_stack(token_config(token_upstream[1], "memory"))
    register_api(stack.mock, lifetime=200)
    await sign_in(stack)
    answers = [await get(stack) for _ in range(2)]
    assert [status for status, _ in answers] == [200, 200]
    first, second = (body["claims"] for _, body in answers)
    assert first["uti"] != second["uti"] and second["exp"] >= first["exp"]
    assert api_grants(stack.mock) == 2


async def test_two_proxies_on_one_redis_share_the_token(
        make_stack: StackFactory, redis_url: str,
        token_upstream: tuple[TokenUpstream, str]) -> None:
    config = token_config(token_upstream[1], "redis", redis_url)
    one, two = await make_stack(config), await make_stack(config)
    register_api(one.mock)
    await sign_in(one)
    assert (await get(one))[0] == 200
    async with one.client.get(two.url + "/dashboards", headers=JSON) as resp:  # same cookie
        assert resp.status == 200
        assert (await resp.json())["claims"]["preferred_username"] == ALICE
    assert api_grants(one.mock) == 1


async def test_refreshing_the_sign_in_tokens_keeps_the_upstream_token(
        make_stack: StackFactory, token_upstream: tuple[TokenUpstream, str]) -> None:
    stack = await make_stack(token_config(token_upstream[1], "memory"))
    register_api(stack.mock, lifetime=3599)
    stack.mock.access_token_lifetime = 200  # the sign-in's (Graph) token: refreshed every time
    await sign_in(stack)
    answers = [await get(stack) for _ in range(3)]
    assert [status for status, _ in answers] == [200] * 3
    assert len({body["claims"]["uti"] for _, body in answers}) == 1
    sign_in_refreshes = [r for r in stack.mock.token_requests
                         if r.get("grant_type") == "refresh_token" and API_URI not in r["scope"]]
    assert len(sign_in_refreshes) >= 2 and api_grants(stack.mock) == 1


async def test_while_another_replica_asks_entra_the_token_in_hand_serves_else_a_504(
        make_stack: StackFactory, redis_url: str,
        token_upstream: tuple[TokenUpstream, str]) -> None:
    stack = await make_stack(token_config(token_upstream[1], "redis", redis_url))
    register_api(stack.mock, lifetime=200)  # due at every use
    await sign_in(stack)
    client = redis.from_url(redis_url)
    session_id = _id(stack)
    [record] = [k.decode() async for k in client.scan_iter(f"azp:*azp_session:s:{session_id}")]
    lock = f"azp:lock:{record.removeprefix('azp:').rpartition('s:')[0]}refresh:{session_id}"
    try:
        await client.set(lock, "other-replica", px=30_000)  # another replica is asking
        status, body = await get(stack)
        assert status == 504, body  # no token in hand: waited for the other, then gave up
        waiting = asyncio.create_task(get(stack))
        await asyncio.sleep(0.5)
        await client.delete(lock)  # the other replica is done (and left no token): ask
        status, first = await waiting
        assert status == 200
        await client.set(lock, "other-replica", px=30_000)
        status, again = await get(stack)  # due, but valid for 200 s: used as it is
        assert status == 200 and again["claims"]["uti"] == first["claims"]["uti"]
        assert api_grants(stack.mock) == 1
    finally:
        await client.delete(lock)
        await client.aclose()


def _id(stack: Stack) -> str:
    """The session id in the signed cookie (itsdangerous: payload.timestamp.signature)."""
    cookie = next(c.value for c in stack.client.cookie_jar if c.key == "azp_session")
    payload = cookie.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
