"""The admin endpoints on the metrics listener: list and revoke sessions over real sockets,
two proxies sharing Redis; loopback-only without a token, the token from everyone with one."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.conftest import ALICE, Browsers, Stack, StackFactory, free_port
from tests.flows.test_session_admin import ALICE_OID, BOB

TOKEN = secrets.token_urlsafe(32)


@dataclass
class Pair:
    a: Stack  # serves the admin listener
    b: Stack
    admin: str  # the admin listener's origin
    cookie: str


async def pair(make_stack: StackFactory, redis_url: str, store: str = "redis",
               **server: Any) -> Pair:
    cookie = "azp_" + secrets.token_hex(4)
    session = {"store": store, "redis_url": redis_url, "cookie_name": cookie}
    port = free_port()
    a = await make_stack({"server": {"metrics_listen": f"127.0.0.1:{port}", **server},
                          "session": session})
    b = await make_stack({"session": session})
    return Pair(a, b, f"http://127.0.0.1:{port}", cookie)


async def signed_in(p: Pair, browsers: Browsers, user: str) -> aiohttp.ClientSession:
    browser = browsers()
    resp = await p.a.login(user, client=browser)
    assert resp.status == 200
    return browser


async def userinfo(stack: Stack, browser: aiohttp.ClientSession) -> int:
    async with browser.get(stack.url + "/oauth2/userinfo") as resp:
        return resp.status


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    """The fields of each `event` logged (logs.fields: structured in JSON, key=value in text)."""
    return [dict(r.__dict__["fields"]) for r in caplog.records if r.getMessage() == event]


async def call(method: str, url: str, **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as client:
        async with client.request(method, url, **kwargs) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, body, resp


async def test_loopback_lists_and_revokes_on_every_replica(
        make_stack: StackFactory, redis_url: str, browsers: Browsers,
        caplog: pytest.LogCaptureFixture) -> None:
    p = await pair(make_stack, redis_url)
    alice = await signed_in(p, browsers, ALICE)
    bob = await signed_in(p, browsers, BOB)
    status, body, _ = await call("GET", p.admin + "/admin/sessions")
    assert status == 200 and sorted(s["user"] for s in body["sessions"]) == [ALICE, BOB]
    assert all(len(s["id"]) == 8 for s in body["sessions"])
    status, body, _ = await call("GET", p.admin + "/admin/sessions", params={"oid": ALICE_OID})
    assert [s["user"] for s in body["sessions"]] == [ALICE]

    caplog.set_level(logging.INFO, "proxy.admin")
    status, body, resp = await call("POST", p.admin + "/admin/sessions/revoke",
                                    json={"user": ALICE})
    assert status == 200 and body["revoked"] == 1
    assert resp.headers["X-Request-Id"] == body["request_id"]
    assert events(caplog, "sessions revoked") == [{
        "request_id": body["request_id"], "peer": "127.0.0.1", "filter": f"user:{ALICE}",
        "count": 1}]
    for stack in (p.a, p.b):  # the revoked session is gone everywhere at once
        assert await userinfo(stack, alice) == 401
        assert await userinfo(stack, bob) == 200

    status, body, _ = await call("POST", p.admin + "/admin/sessions/revoke",
                                 data={"all": "true"})  # a form works too
    assert status == 200 and body["revoked"] == 1
    assert await userinfo(p.b, bob) == 401


async def test_with_a_token_every_caller_must_send_it(
        make_stack: StackFactory, redis_url: str, browsers: Browsers,
        caplog: pytest.LogCaptureFixture) -> None:
    p = await pair(make_stack, redis_url, admin_token=TOKEN)
    alice = await signed_in(p, browsers, ALICE)
    revoke = p.admin + "/admin/sessions/revoke"
    caplog.set_level(logging.INFO, "proxy.admin")
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Bearer {TOKEN}x"},
                    {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN.upper()}"}):
        for method, url in (("GET", p.admin + "/admin/sessions"), ("POST", revoke)):
            status, body, resp = await call(method, url, headers=headers, params={"all": "true"}
                                            if method == "POST" else None)
            assert status == 401, (headers, method)  # loopback is no excuse
            assert body["error"] == "unauthenticated" and body["request_id"]
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert events(caplog, "admin request refused")[-1] == {
                "request_id": body["request_id"], "peer": "127.0.0.1",
                "path": url.removeprefix(p.admin), "reason": "unauthenticated"}
    logged = repr([(r.getMessage(), getattr(r, "fields", None)) for r in caplog.records])
    assert TOKEN not in logged and TOKEN[:-1] not in logged
    assert await userinfo(p.a, alice) == 200  # nothing was revoked
    status, body, _ = await call("POST", revoke, json={"all": True},
                                 headers={"Authorization": f"bearer {TOKEN}"})
    assert status == 200 and body["revoked"] == 1
    assert await userinfo(p.b, alice) == 401


async def test_revocation_is_post_only_and_takes_exactly_one_filter(
        make_stack: StackFactory, redis_url: str, browsers: Browsers) -> None:
    p = await pair(make_stack, redis_url)
    alice = await signed_in(p, browsers, ALICE)
    revoke = p.admin + "/admin/sessions/revoke"
    status, _, _ = await call("GET", revoke, params={"all": "true"})
    assert status == 405  # a link or an image can never end sessions
    cases: list[dict[str, Any]] = [{}, {"json": {}}, {"json": {"user": ALICE, "oid": ALICE_OID}},
                   {"json": {"user": ALICE, "all": True}}, {"json": {"who": ALICE}},
                   {"json": {"user": ["x"]}}, {"json": ["user"]}, {"json": {"all": "yes"}},
                   {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
                   {"json": {"user": "a\x1b[2Jb"}}, {"json": {"user": "a" * 257}},
                   {"data": b"[" * 4000, "headers": {"Content-Type": "application/json"}},
                   {"data": b"user=%ff%fe"}, {"data": b"&&=="},
                   {"data": b"user=a&user=b"}, {"params": {"user": BOB}, "json": {"user": ALICE}}]
    for kwargs in cases:
        status, body, _ = await call("POST", revoke, **kwargs)
        assert status == 400 and body["error"] == "bad_request", kwargs
    for data in (b"x" * 5000, b"user=" + b"a" * 4092):  # one byte too many
        status, body, _ = await call("POST", revoke, data=data)
        assert status == 413

    async def slowly() -> AsyncIterator[bytes]:  # chunked, in pieces: read to the end
        for _ in range(5):
            yield b"u" * 1000
            await asyncio.sleep(0.01)
    status, body, _ = await call("POST", revoke, data=slowly())
    assert status == 413
    for params in ({"all": "true"}, {"user": ALICE, "oid": ALICE_OID}, {"page": "2"},
                   [("user", BOB), ("user", ALICE)]):
        status, body, _ = await call("GET", p.admin + "/admin/sessions", params=params)
        assert status == 400, params
    assert await userinfo(p.a, alice) == 200
    status, _, _ = await call("GET", p.admin + "/metrics")
    assert status == 200  # Prometheus still scrapes as before


async def test_memory_store_is_administered_through_its_own_listener(
        make_stack: StackFactory, redis_url: str, browsers: Browsers) -> None:
    p = await pair(make_stack, redis_url, store="memory")
    alice = await signed_in(p, browsers, ALICE)
    status, body, _ = await call("POST", p.admin + "/admin/sessions/revoke",
                                 params={"user": ALICE.upper()})
    assert status == 200 and body["revoked"] == 1
    assert await userinfo(p.a, alice) == 401


async def test_cookie_store_cannot_revoke(make_stack: StackFactory, redis_url: str,
                                          browsers: Browsers) -> None:
    p = await pair(make_stack, redis_url, store="cookie")
    alice = await signed_in(p, browsers, ALICE)
    status, body, _ = await call("POST", p.admin + "/admin/sessions/revoke",
                                 json={"all": True})
    assert status == 409 and "server-side store" in body["message"]
    assert await userinfo(p.a, alice) == 200


async def test_redis_down_is_a_503_with_the_request_id(make_stack: StackFactory,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    p = await pair(make_stack, f"redis://127.0.0.1:{free_port()}/0")
    caplog.set_level(logging.INFO, "proxy.admin")
    for method, url in (("GET", p.admin + "/admin/sessions"),
                        ("POST", p.admin + "/admin/sessions/revoke?all=true")):
        status, body, _ = await call(method, url)
        assert status == 503 and body["error"] == "store_unavailable" and body["request_id"]
        assert events(caplog, "admin request failed")[-1] == {
            "request_id": body["request_id"], "reason": "store-unavailable"}
