"""The proxy's cookies stay inside what browsers and front proxies accept (issue 17 item 6,
issue 18 item 3): a capped return target, a total budget for all of the proxy's cookies, a
clear refusal for identities the cookie store cannot hold, and sign-out that deletes every
chunk. Over real sockets, for the stores where it matters."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import pytest

from proxy.session.budget import COOKIE_BUDGET, MAX_TARGET, SESSION_MAX, cookie_bytes
from tests.attacks.conftest import ShieldFactory
from tests.attacks.harness import Upstream, raw_exchange, tally
from tests.conftest import HTML, Browsers, port_of
from tests.flows.test_login_security import fetch

DAVE = "dave@contoso.example"  # 250 groups, read from Graph (overage)


def proxy_cookies(browser: aiohttp.ClientSession) -> list[tuple[str, str]]:
    return [(c.key, c.value) for c in browser.cookie_jar if c.key.startswith("azp_session")]


async def test_a_return_target_past_the_cap_is_refused_with_a_page(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield()
    browser = browsers()
    hop = await fetch(browser, stack.url + "/oauth2/start?rd=" + quote("/" + '"' * 2047))
    tally("cookie-budget", refused=hop.status == 400, crashed=hop.status >= 500)
    assert hop.status == 400 and "shorter link" in hop.text
    assert proxy_cookies(browser) == []  # no 5.8 KB login cookie that no browser keeps
    ok = await fetch(browser, stack.url + "/oauth2/start?rd=" + quote("/" + "a" * (MAX_TARGET - 1)))
    assert ok.status == 302 and len(proxy_cookies(browser)) == 1
    assert upstream.seen == []


@pytest.mark.parametrize("signed_in", [False, True])
async def test_pending_logins_never_push_the_proxys_cookies_past_the_budget(
        shield: ShieldFactory, browsers: Browsers, signed_in: bool) -> None:
    stack = await shield()
    browser = browsers()
    if signed_in:
        await stack.login(client=browser, path="/healthz")
    long_rd = quote("/" + "b" * (MAX_TARGET - 1))
    for _ in range(8):
        hop = await fetch(browser, stack.url + "/oauth2/start?rd=" + long_rd)
        assert hop.status == 302
        total = cookie_bytes(proxy_cookies(browser))
        tally("cookie-budget", refused=total <= COOKIE_BUDGET, crashed=False)
        assert total <= COOKIE_BUDGET, total
    # the newest login still completes (the evicted ones are the oldest)
    async with browser.get(hop.location, headers=HTML) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("store", ["cookie", "memory", "redis"])
async def test_an_identity_the_cookie_store_cannot_hold_fails_with_a_clear_page(
        shield: ShieldFactory, browsers: Browsers, redis_url: str, store: str) -> None:
    stack = await shield({"session": {"store": store, "redis_url": redis_url}})
    browser = browsers()
    resp = await stack.login(DAVE, client=browser, path="/app")
    page = await resp.text()
    if store == "cookie":
        tally("cookie-budget", refused=resp.status == 500, crashed=False)
        assert resp.status == 500 and "server" in page and "250 groups" in page
        assert proxy_cookies(browser) == []  # nothing written that would lock the user out
    else:  # server-side stores keep any identity; the cookie is an opaque id
        assert resp.status == 200
        assert cookie_bytes(proxy_cookies(browser)) < 200
    async with browser.get(stack.url + "/oauth2/sign_out") as out:
        assert out.status == 200  # sign-out always works


async def test_the_largest_identity_that_fits_is_read_back(shield: ShieldFactory,
                                                           browsers: Browsers) -> None:
    """What is written is read back: no sign-in loop at the edge of the budget."""
    stack = await shield()
    dave = stack.mock.users[DAVE]
    dave.groups = dave.groups[:150]  # under the overage limit: in the token, chunked
    browser = browsers()
    resp = await stack.login(DAVE, client=browser, path="/app")
    assert resp.status == 200
    sizes = [len(v) for _, v in proxy_cookies(browser)]
    assert len(sizes) == 2 and sum(sizes) <= SESSION_MAX
    async with browser.get(stack.url + "/oauth2/userinfo") as info:
        assert len((await info.json())["groups"]) == 150


async def test_sign_out_deletes_every_chunk(shield: ShieldFactory) -> None:
    stack = await shield()
    cookies = "; ".join(f"azp_session_{i}=x" for i in (0, 1, 9, 10, 11, 99))
    exchange = await raw_exchange(port_of(stack), (
        f"GET /oauth2/sign_out HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookies}\r\n"
        "Connection: close\r\n\r\n").encode())
    deleted = {v.split("=", 1)[0] for k, v in exchange.responses[0].headers
               if k.lower() == "set-cookie"}
    tally("cookie-budget", refused=len(deleted) == 6, crashed=False)
    assert {f"azp_session_{i}" for i in (0, 1, 9, 10, 11, 99)} <= deleted


@pytest.mark.parametrize("size", [6000, 9000, 50_000])
async def test_no_error_answer_echoes_cookie_bytes(shield: ShieldFactory, size: int) -> None:
    stack = await shield()
    marker = "SECRETCOOKIEBYTES"
    value = (marker * (size // len(marker) + 1))[:size]
    exchange = await raw_exchange(port_of(stack), (
        f"GET /app HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: azp_session={value}\r\n"
        "Connection: close\r\n\r\n").encode())
    raw = b"".join(repr(r.headers).encode() + r.body for r in exchange.responses) \
        + exchange.leftover
    tally("cookie-budget", refused=marker.encode() not in raw,
          crashed=any(s >= 500 for s in exchange.statuses))
    assert exchange.statuses and exchange.statuses[0] in (400, 401, 431)
    assert marker.encode() not in raw
