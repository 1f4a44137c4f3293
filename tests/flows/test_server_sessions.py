"""One behavioural suite for the server-side stores (memory and Redis) over real sockets."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
import redis.asyncio as redis

from proxy.mock_entra.users import ADMINS_GROUP_ID
from tests.conftest import ALICE, HTML, Stack, StackFactory
from tests.flows.test_policy import dave_only_group

STORES = ["memory", "redis"]


@pytest.fixture(params=STORES)
async def server_stack(request: pytest.FixtureRequest, make_stack: StackFactory,
                       redis_url: str) -> Stack:
    return await make_stack(store_config(request.param, redis_url))


def store_config(store: str, redis_url: str, **session: Any) -> dict[str, Any]:
    return {"session": {"store": store, "redis_url": redis_url, **session}}


def session_cookie(stack: Stack) -> str:
    return next(c.value for c in stack.client.cookie_jar if c.key == "azp_session")


async def userinfo_status(stack: Stack, cookie: str | None = None) -> int:
    headers = {"Cookie": f"azp_session={cookie}"} if cookie is not None else None
    client = stack.new_browser() if cookie is not None else stack.client
    try:
        async with client.get(stack.url + "/oauth2/userinfo", headers=headers) as resp:
            return resp.status
    finally:
        if cookie is not None:
            await client.close()


async def sign_in(stack: Stack) -> None:
    """Sign in without touching a protected page afterwards (it would refresh already)."""
    stack.mock.auto_user = ALICE
    async with stack.client.get(stack.url + "/oauth2/start?rd=/healthz") as resp:
        assert resp.status == 200 and resp.url.path == "/healthz"


def refresh_grants(stack: Stack) -> int:
    return sum(1 for r in stack.mock.token_requests if r.get("grant_type") == "refresh_token")


async def test_cookie_holds_only_a_signed_opaque_id(server_stack: Stack) -> None:
    await server_stack.login()
    cookie = session_cookie(server_stack)
    assert len(cookie) < 120
    decoded = base64.urlsafe_b64decode(cookie.split(".")[0] + "==")
    assert b"alice" not in decoded and b"oid" not in decoded
    async with server_stack.client.get(server_stack.url + "/oauth2/userinfo") as resp:
        assert (await resp.json())["preferred_username"] == ALICE


async def test_forged_session_id_is_not_a_session(server_stack: Stack) -> None:
    await server_stack.login()
    cookie = session_cookie(server_stack)
    assert await userinfo_status(server_stack, cookie) == 200
    assert await userinfo_status(server_stack, cookie[:-3] + "AAA") == 401
    assert await userinfo_status(server_stack, "InRvdGFsbHktZ3Vlc3NlZCI.x.y") == 401


async def test_each_login_gets_a_new_id_and_ends_the_old_one(server_stack: Stack) -> None:
    await server_stack.login()
    first = session_cookie(server_stack)
    await sign_in(server_stack)
    second = session_cookie(server_stack)
    assert first != second
    assert await userinfo_status(server_stack, first) == 401
    assert await userinfo_status(server_stack, second) == 200


async def test_sign_out_ends_the_session_server_side(server_stack: Stack) -> None:
    await server_stack.login()
    cookie = session_cookie(server_stack)
    async with server_stack.client.post(server_stack.url + "/oauth2/sign_out") as resp:
        assert resp.status == 200
    assert await userinfo_status(server_stack, cookie) == 401  # a copied cookie is dead too


async def test_tokens_passed_upstream_when_enabled(make_stack: StackFactory,
                                                   redis_url: str) -> None:
    stack = await make_stack({**store_config("redis", redis_url), "identity": {
        "pass_access_token": True, "pass_id_token": True}})
    resp = await stack.login()
    body = await resp.json()
    headers = {k.lower(): v for k, v in body["headers"].items()}
    issued = stack.mock.issued[-1]
    assert headers["x-forwarded-access-token"] == [issued["access_token"]]
    assert headers["x-forwarded-id-token"] == [issued["id_token"]]


async def test_records_in_redis_are_encrypted(make_stack: StackFactory, redis_url: str) -> None:
    stack = await make_stack(store_config("redis", redis_url))
    await stack.login()
    issued = stack.mock.issued[-1]
    client = redis.Redis.from_url(redis_url)
    try:
        # Keys are namespaced per application: client_id and cookie name.
        pattern = f"azp:{stack.config.azure.client_id}/azp_session:s:*"
        keys = [k async for k in client.scan_iter(pattern)]
        values = [await client.get(k) for k in keys]
    finally:
        await client.aclose()
    assert values
    for value in values:
        assert value is not None
        assert issued["refresh_token"].encode() not in value
        assert b"alice" not in value


async def test_refresh_happens_once_under_50_concurrent_requests(server_stack: Stack) -> None:
    server_stack.mock.access_token_lifetime = 60  # inside the 5-minute refresh window
    await sign_in(server_stack)
    server_stack.mock.access_token_lifetime = 3599
    statuses = await asyncio.gather(*[_get(server_stack, f"/r{i}") for i in range(50)])
    assert statuses == [200] * 50
    assert refresh_grants(server_stack) == 1
    assert await _get(server_stack, "/after") == 200
    assert refresh_grants(server_stack) == 1


async def _get(stack: Stack, path: str) -> int:
    async with stack.client.get(stack.url + path) as resp:
        await resp.read()
        return resp.status


async def test_rejected_refresh_ends_the_session(server_stack: Stack) -> None:
    server_stack.mock.access_token_lifetime = 60
    await sign_in(server_stack)
    server_stack.mock.revoke_refresh_tokens()
    assert await _get(server_stack, "/x") == 401
    assert refresh_grants(server_stack) == 1
    async with server_stack.client.get(server_stack.url + "/x", headers=HTML,
                                       allow_redirects=False) as resp:
        assert resp.status == 302  # a browser simply signs in again


async def test_refresh_during_an_entra_outage_keeps_the_session(server_stack: Stack) -> None:
    server_stack.mock.access_token_lifetime = 60
    await sign_in(server_stack)
    server_stack.mock.faults.token_error = (503, {"error": "temporarily_unavailable"})
    assert await _get(server_stack, "/x") == 200
    server_stack.mock.faults.token_error = None
    server_stack.mock.access_token_lifetime = 3599
    assert await _get(server_stack, "/y") == 200
    assert refresh_grants(server_stack) == 2


async def test_front_channel_logout_ends_every_session_of_the_sid(server_stack: Stack) -> None:
    await server_stack.login()
    other = server_stack.new_browser()
    async with other:
        sids = list(server_stack.mock.sessions)  # Entra's sign-in sessions, oldest first
        await server_stack.login(client=other)
        # The first browser's sid, as Entra knows it: the proxy never hands `sid` out.
        sid = sids[0]
        assert sid and len(server_stack.mock.sessions) == 2
        # Entra calls from a hidden iframe: often with no cookie at all, and never an iss.
        browserless = server_stack.new_browser()
        async with browserless:
            async with browserless.get(
                    server_stack.url + f"/oauth2/frontchannel_logout?sid={sid}") as resp:
                assert resp.status == 200
        assert await _get(server_stack, "/x") == 401
        async with other.get(server_stack.url + "/oauth2/userinfo") as resp:
            assert resp.status == 200  # another Entra sign-in session (another sid) lives on


@pytest.mark.parametrize("sid", ["", "a" * 200, "x y", "<script>"])
async def test_front_channel_logout_refuses_bad_sids(stack: Stack, sid: str) -> None:
    async with stack.client.get(stack.url + "/oauth2/frontchannel_logout",
                                params={"sid": sid}) as resp:
        assert resp.status == 400


async def test_federated_logout_sends_the_browser_to_entra(make_stack: StackFactory,
                                                           redis_url: str) -> None:
    stack = await make_stack({**store_config("memory", redis_url),
                              "azure": {"federated_logout": True}})
    await stack.login()
    async with stack.client.get(stack.url + "/oauth2/sign_out", allow_redirects=False) as resp:
        location = resp.headers["Location"]
    assert location.startswith(stack.idp + "/11111111-1111-4111-8111-111111111111/oauth2/v2.0/"
                               "logout?")
    assert "post_logout_redirect_uri=" + "http%3A%2F%2F127.0.0.1" in location
    assert "id_token_hint=" in location
    async with stack.client.get(location) as resp:
        assert resp.status == 200
    assert await _get(stack, "/x") == 401


async def test_idle_timeout_ends_a_quiet_session(make_stack: StackFactory,
                                                 redis_url: str) -> None:
    stack = await make_stack(store_config("memory", redis_url, idle_timeout="2s"))
    await stack.login()
    for _ in range(3):  # activity keeps it alive past the idle timeout
        await asyncio.sleep(0.8)
        assert await _get(stack, "/x") == 200
    started = time.monotonic()
    await asyncio.sleep(2.3)
    assert time.monotonic() - started >= 2
    assert await _get(stack, "/x") == 401


# --- groups after a refresh are what Entra says now -----------------------------------------

def gated_config(store: str, redis_url: str, group: str, upstream: str) -> dict[str, Any]:
    return {**store_config(store, redis_url), "upstreams": [
        {"path": "/", "url": upstream, "public": ["^/healthz$"]},
        {"path": "/admin", "url": upstream, "access": {"groups": [group]}}]}


@pytest.mark.parametrize("store", STORES)
async def test_removal_from_the_last_group_takes_effect_at_the_next_refresh(
        make_stack: StackFactory, redis_url: str, upstream_url: str, store: str) -> None:
    stack = await make_stack(gated_config(store, redis_url, ADMINS_GROUP_ID, upstream_url))
    await sign_in(stack)
    assert await _get(stack, "/admin/panel") == 200 and refresh_grants(stack) == 0
    stack.mock.access_token_lifetime = 60  # the next token is inside the refresh window
    await sign_in(stack)
    stack.mock.access_token_lifetime = 3599
    # An admin removes Alice from every group: Entra's next ID token has no `groups` claim.
    stack.mock.users[ALICE].groups = []
    assert await _get(stack, "/admin/panel") == 403
    assert refresh_grants(stack) == 1
    async with stack.client.get(stack.url + "/oauth2/userinfo") as resp:
        assert (await resp.json()).get("groups", []) == []


@pytest.mark.parametrize("store", STORES)
async def test_overage_groups_are_read_from_graph_again_at_refresh(
        make_stack: StackFactory, redis_url: str, upstream_url: str, store: str) -> None:
    dave = "dave@contoso.example"
    stack = await make_stack({})
    group = dave_only_group(stack.mock)
    stack = await make_stack(gated_config(store, redis_url, group, upstream_url))
    stack.mock.access_token_lifetime = 60
    stack.mock.auto_user = dave
    async with stack.client.get(stack.url + "/oauth2/start?rd=/admin/panel") as resp:
        assert resp.status == 200  # 250 groups from Graph at sign-in, this one among them
    stack.mock.access_token_lifetime = 3599
    user = stack.mock.users[dave]
    user.groups = [g for g in user.groups if g != group]  # still past the overage limit
    assert await _get(stack, "/admin/panel") == 403
    assert refresh_grants(stack) >= 1
