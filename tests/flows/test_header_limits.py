"""Identities of any size reach stock upstreams (issue 14 item 5): a user in 250 groups (Dave,
read from Graph on overage) and one in 1,000 (Gina) through the proxy to an aiohttp app and
to a real nginx, both at their default header limits."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import jwt
import pytest

from proxy.mock_entra import MockEntra
from tests.conftest import Stack, StackFactory, served
from tests.support import stock_upstream
from tests.support.fronts import nginx

DAVE = "dave@contoso.example"  # 250 groups
GINA = "gina@contoso.example"  # 1,000 groups
LIMIT = 4096  # identity.max_header_bytes default
BUDGET = 16384  # identity.max_total_header_bytes default
Mock = tuple[MockEntra, str]
IDENTITY = ("x-forwarded-", "x-auth-assertion", "x-ms-client-principal")


@pytest.fixture
async def stock_url() -> AsyncIterator[str]:
    async with served(stock_upstream.create_app()) as url:
        yield url


async def big_stack(make_stack: StackFactory, url: str, **identity: Any) -> Stack:
    return await make_stack({
        "session": {"store": "memory"},
        "identity": {"easy_auth": True, **identity},
        "upstreams": [{"path": "/", "url": url, "public": ["^/healthz$"]}]})


async def seen_by_upstream(stack: Stack, user: str) -> dict[str, Any]:
    resp = await stack.login(user, path="/x")
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = json.loads(await resp.text())
    return body


def groups_of(values: list[str]) -> list[str]:
    """The list an app reads from repeated lines (joined with "," or ", ", as RFC 9110)."""
    joined = ", ".join(values)
    return [unquote(item.strip()) for item in joined.split(",")] if joined else []


def identity_lines(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n, v) for n, v in body["lines"] if n.lower().startswith(IDENTITY)]


def one(body: dict[str, Any], name: str) -> str:
    values: list[str] = [v for n, v in body["lines"] if n.lower() == name.lower()]
    assert len(values) == 1, (name, len(values))
    return values[0]


def assert_within_limits(body: dict[str, Any], limit: int = LIMIT,
                         budget: int = BUDGET) -> None:
    sizes = [len(n) + 2 + len(v.encode("latin-1")) for n, v in identity_lines(body)]
    assert sizes and max(sizes) <= limit and sum(sizes) <= budget


def principal_claims(body: dict[str, Any]) -> list[dict[str, str]]:
    claims: list[dict[str, str]] = json.loads(
        base64.b64decode(one(body, "X-MS-CLIENT-PRINCIPAL")))["claims"]
    return claims


async def userinfo_groups(stack: Stack) -> list[str]:
    async with stack.client.get(stack.url + "/oauth2/userinfo") as resp:
        groups: list[str] = (await resp.json())["groups"]
        return groups


async def test_a_stock_aiohttp_app_refuses_a_250_group_line(mock_server: Mock,
                                                            stock_url: str) -> None:
    """The failure this fixes, against the same upstream the tests below pass through."""
    line = ",".join(mock_server[0].users[DAVE].groups)
    async with aiohttp.ClientSession() as http, \
            http.get(stock_url + "/x", headers={"X-Forwarded-Groups": line}) as resp:
        assert resp.status == 400
        assert "8190" in await resp.text()


async def test_250_groups_reach_a_stock_aiohttp_app_over_repeated_lines(
        make_stack: StackFactory, stock_url: str) -> None:
    stack = await big_stack(make_stack, stock_url)
    dave = stack.mock.users[DAVE]
    body = await seen_by_upstream(stack, DAVE)
    assert_within_limits(body)
    assert len(body["groups"]) > 1  # split: one line would be 9 KB
    assert groups_of(body["groups"]) == dave.groups
    assert not [n for n, _ in body["lines"] if n.lower().endswith("-overflow")]
    # The assertion and the principal do not fit with 250 groups: Entra's overage marker.
    claims = jwt.decode(one(body, "X-Auth-Assertion"), options={"verify_signature": False})
    assert "groups" not in claims and claims["_claim_names"] == {"groups": "src1"}
    assert claims["_claim_sources"]["src1"]["endpoint"] == stack.url + "/oauth2/userinfo"
    typs = [c["typ"] for c in principal_claims(body)]
    assert "groups" not in typs and "_claim_names" in typs
    assert await userinfo_groups(stack) == dave.groups  # where the app reads them all
    async with stack.client.get(stack.url + "/.auth/me") as resp:  # and Easy Auth apps
        claims = (await resp.json())[0]["user_claims"]
    assert [c["val"] for c in claims if c["typ"] == "groups"] == dave.groups


async def test_1000_groups_are_left_out_and_marked_never_cut_short(
        make_stack: StackFactory, stock_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "proxy.identity")
    stack = await big_stack(make_stack, stock_url)
    gina = stack.mock.users[GINA]
    body = await seen_by_upstream(stack, GINA)
    assert_within_limits(body)
    assert body["groups"] == []  # 37 KB do not fit: none rather than some
    assert one(body, "X-Forwarded-Groups-Overflow") == "true"
    assert one(body, "X-Forwarded-User") == GINA
    assert len(await userinfo_groups(stack)) == len(gina.groups) == 1000
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"user={GINA} groups=1000" in m and "left_out=X-Forwarded-Groups" in m
               and "identity.groups_filter" in m for m in warned), warned


async def test_smaller_limits_are_kept(make_stack: StackFactory, stock_url: str) -> None:
    stack = await big_stack(make_stack, stock_url, max_header_bytes=1024,
                            max_total_header_bytes=12288)
    body = await seen_by_upstream(stack, DAVE)
    assert_within_limits(body, 1024, 12288)
    assert groups_of(body["groups"]) == stack.mock.users[DAVE].groups
    stack = await big_stack(make_stack, stock_url, max_total_header_bytes=8192)
    body = await seen_by_upstream(stack, DAVE)
    assert_within_limits(body, LIMIT, 8192)
    assert body["groups"] == [] and one(body, "X-Forwarded-Groups-Overflow") == "true"


@pytest.mark.parametrize("user", [DAVE, GINA])
async def test_big_identities_pass_a_stock_nginx(make_stack: StackFactory, stock_url: str,
                                                 tmp_path: Path, user: str) -> None:
    """nginx at its defaults (large_client_header_buffers 4 8k) in front of the app."""
    async with nginx(tmp_path, f"location / {{ proxy_pass {stock_url}; }}") as front:
        stack = await big_stack(make_stack, front)
        async with aiohttp.ClientSession() as http:  # control: nginx refuses a 9 KB line
            line = ",".join(stack.mock.users[DAVE].groups)
            async with http.get(front + "/x", headers={"X-Forwarded-Groups": line}) as resp:
                assert resp.status == 400
        body = await seen_by_upstream(stack, user)
    assert_within_limits(body)
    expected = stack.mock.users[user].groups if user == DAVE else []
    assert groups_of(body["groups"]) == expected


async def test_groups_filter_by_id_and_pattern(make_stack: StackFactory, mock_server: Mock,
                                               stock_url: str) -> None:
    gina = mock_server[0].users[GINA].groups
    picked, prefix = gina[7].upper(), gina[3][:2]  # ids compare in any case
    stack = await big_stack(make_stack, stock_url, groups_filter=[picked, f"re:^{prefix}"])
    body = await seen_by_upstream(stack, GINA)
    expected = [g for g in gina if g == gina[7] or g.startswith(prefix)]
    assert 1 < len(expected) < 200
    assert groups_of(body["groups"]) == expected
    claims = jwt.decode(one(body, "X-Auth-Assertion"), options={"verify_signature": False})
    assert claims["groups"] == expected and "_claim_names" not in claims
    assert [c["val"] for c in principal_claims(body) if c["typ"] == "groups"] == expected


async def test_groups_filter_policy_sends_the_groups_policies_name(
        make_stack: StackFactory, mock_server: Mock, stock_url: str) -> None:
    """Only what some policy names is sent, yet the policy reads the full list: the route
    asks for a group that the filter does not let through to the app."""
    gina = mock_server[0].users[GINA].groups
    stack = await make_stack({
        "session": {"store": "memory"},
        "access": {"groups": [gina[5], "00000000-0000-4000-8000-00000000dead"]},
        "identity": {"groups_filter": ["policy"]},
        "upstreams": [
            {"path": "/", "url": stock_url, "public": ["^/healthz$"]},
            {"path": "/deep", "url": stock_url, "access": {"groups": [gina[999]]}},
            {"path": "/other", "url": stock_url, "access": {"groups": [gina[42]]}}]})
    body = await seen_by_upstream(stack, GINA)
    assert groups_of(body["groups"]) == [gina[5], gina[42], gina[999]]
    stack = await make_stack({
        "session": {"store": "memory"}, "identity": {"groups_filter": [gina[0]]},
        "upstreams": [{"path": "/", "url": stock_url, "access": {"groups": [gina[999]]}}]})
    body = await seen_by_upstream(stack, GINA)  # in by gina[999], which is not sent on
    assert groups_of(body["groups"]) == [gina[0]]
    async with stack.new_browser() as alice:
        resp = await stack.login("alice@contoso.example", client=alice, path="/x")
    assert resp.status == 403  # and the policy still refuses who is not in it


@pytest.mark.parametrize("user", [DAVE, GINA])
async def test_forward_auth_answer_keeps_the_limits_on_one_line_each(
        make_stack: StackFactory, stock_url: str, user: str) -> None:
    """An ingress copies one value of each header from the answer: a list is never split
    there (Dave's would be, forwarded), it is left out and marked."""
    stack = await big_stack(make_stack, stock_url)
    await stack.login(user)
    async with stack.client.get(stack.url + "/oauth2/auth") as resp:
        assert resp.status == 202
        for name in ("X-Auth-Request-Groups", "X-Forwarded-Groups"):
            assert name not in resp.headers
            assert resp.headers[f"{name}-Overflow"] == "true"
        assert max(len(k) + 2 + len(v) for k, v in resp.headers.items()) <= LIMIT
        assert len(resp.headers.getall("X-Forwarded-User")) == 1


async def test_forward_auth_answer_sends_filtered_groups(make_stack: StackFactory,
                                                         mock_server: Mock,
                                                         stock_url: str) -> None:
    gina = mock_server[0].users[GINA].groups
    stack = await big_stack(make_stack, stock_url, groups_filter=[gina[1], gina[2]])
    await stack.login(GINA)
    async with stack.client.get(stack.url + "/oauth2/auth") as resp:
        assert resp.headers["X-Auth-Request-Groups"] == f"{gina[1]},{gina[2]}"
        assert resp.headers["X-Forwarded-Groups"] == f"{gina[1]},{gina[2]}"
        assert "X-Auth-Request-Groups-Overflow" not in resp.headers


async def test_the_total_budget_holds_with_the_assertion_and_principal(
        make_stack: StackFactory, stock_url: str) -> None:
    """max_total_header_bytes = max_header_bytes (allowed): the assertion and the principal,
    each within a line, must not take the whole identity past the total (review2 finding 7)."""
    stack = await big_stack(make_stack, stock_url, max_total_header_bytes=LIMIT)
    alice = stack.mock.users["alice@contoso.example"]
    alice.groups = [f"{n:08x}-0000-4000-8000-00000000abcd" for n in range(45)]
    body = await seen_by_upstream(stack, "alice@contoso.example")
    assert_within_limits(body, LIMIT, LIMIT)
    assert one(body, "X-Forwarded-User") == "alice@contoso.example"
    assert one(body, "X-Auth-Assertion") and one(body, "X-MS-CLIENT-PRINCIPAL")
    # Never a partial list anywhere: all 45 groups, or none and the marker.
    sent = groups_of(body["groups"])
    assert sent == alice.groups or (sent == [] and one(
        body, "X-Forwarded-Groups-Overflow") == "true")
