"""CSRF and injection on /callback/{connector}: what tests/flows/test_login_security.py does not
already cover (code injection, expired and flooded login state, replay on another replica,
undecodable login cookies)."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from itsdangerous import TimestampSigner
from yarl import URL

from proxy.mock_entra import DEFAULT_CLIENT_ID
from proxy.session.signing import LOGIN_SALT, app_salt, serializer
from tests.attacks.conftest import ShieldFactory, store_config
from tests.attacks.harness import Upstream, raw_exchange, tally, tracebacks
from tests.conftest import SECRET, Browsers, Stack, port_of
from tests.flows.test_login_security import (
    LOGIN_PREFIX,
    Hop,
    at_idp,
    fetch,
    give_cookie,
    login_cookie,
    start_login,
)

FAMILY = "callback-csrf"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def signed_in(stack: Stack, browser: aiohttp.ClientSession) -> bool:
    async with browser.get(stack.url + "/oauth2/userinfo") as resp:
        await resp.read()
        return resp.status == 200


def refused(hop: Hop, *statuses: int) -> bool:
    return hop.status in statuses and not hop.session_cookies()


async def test_injected_code_with_the_victims_state_fails_pkce(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    # The attacker has a code for their own account (bound to their PKCE verifier) and
    # plants it in the victim's callback, which carries the victim's genuine state.
    stack = await shield()
    attacker, victim = browsers(), browsers()
    stolen = query_of(await at_idp(stack, attacker, await start_login(stack, attacker)))
    victims = query_of(await at_idp(stack, victim, await start_login(stack, victim)))
    injected = URL(stack.url + "/callback/azuread").with_query(code=stolen["code"],
                                                                state=victims["state"])
    hop = await fetch(victim, injected)
    tally(FAMILY, refused=refused(hop, 502), crashed=hop.status >= 500 and hop.status != 502)
    assert refused(hop, 502), (hop.status, hop.text[:300])
    assert "token endpoint" in hop.text
    assert not await signed_in(stack, victim)
    redeemed = stack.mock.token_requests[-1]
    assert redeemed["code"] == stolen["code"] and redeemed["grant_type"] == "authorization_code"
    assert upstream.seen == []


def resign(value: str, age: float) -> str:
    """The same login-state payload, signed with the real secret `age` seconds ago."""
    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age)

    salt = app_salt(LOGIN_SALT, DEFAULT_CLIENT_ID)
    s = serializer([SECRET], salt)
    s.signer = Then
    payload: Any = serializer([SECRET], salt).loads(value)
    return s.dumps(payload)


@pytest.mark.parametrize(("age", "accepted"), [(11 * 60, False), (10 * 60 + 5, False),
                                               (30, True)])
async def test_login_state_older_than_ten_minutes_is_refused(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, age: float,
        accepted: bool) -> None:
    stack = await shield()
    browser = browsers()
    callback = await at_idp(stack, browser, await start_login(stack, browser))
    name, value = login_cookie(browser)
    give_cookie(stack, browser, name, resign(value, age))
    hop = await fetch(browser, callback)
    if accepted:  # the control: the re-signer itself produces a valid cookie
        assert hop.status == 302 and hop.session_cookies() == ["azp_session"]
        return
    tally(FAMILY, refused=refused(hop, 400), crashed=hop.status >= 500)
    assert refused(hop, 400), (hop.status, hop.text[:300])
    assert stack.mock.token_requests == []


async def test_a_flood_of_login_cookies_costs_nothing(shield: ShieldFactory, upstream: Upstream,
                                                      browsers: Browsers) -> None:
    stack = await shield()
    flood = "; ".join(f"{LOGIN_PREFIX}{secrets.token_urlsafe(32)}=x" for _ in range(400))
    started = time.monotonic()
    async with aiohttp.ClientSession() as client, client.get(
            stack.url + "/page", allow_redirects=False,
            headers={"Accept": "text/html", "Cookie": flood}) as resp:
        await resp.read()
        set_cookies = resp.headers.getall("Set-Cookie", [])
    elapsed = time.monotonic() - started
    tally(FAMILY, refused=resp.status == 302, crashed=resp.status >= 500)
    assert resp.status == 302 and resp.headers["Location"].startswith(stack.idp)
    assert elapsed < 2.0
    assert 1 <= len(set_cookies) <= 60  # evicts a bounded number, sets one new
    assert upstream.seen == []


async def test_callback_of_another_connector_redeems_nothing(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield()
    browser = browsers()
    callback = await at_idp(stack, browser, await start_login(stack, browser))
    elsewhere = callback.replace("/callback/azuread?", "/callback/other?")
    hop = await fetch(browser, elsewhere, headers={})
    tally(FAMILY, refused=refused(hop, 401), crashed=hop.status >= 500)
    assert refused(hop, 401)
    assert stack.mock.token_requests == [] and upstream.seen == []
    hop = await fetch(browser, callback)  # the genuine callback still works
    assert hop.status == 302 and hop.session_cookies() == ["azp_session"]


async def test_error_callback_with_a_foreign_state_shows_nothing(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield()
    other, victim = browsers(), browsers()
    foreign = query_of(await start_login(stack, other))["state"]
    url = URL(stack.url + "/callback/azuread").with_query(
        state=foreign, error="access_denied",
        error_description="AADSTS50105: Call +1 555 0100 to unlock your account.")
    hop = await fetch(victim, url)
    tally(FAMILY, refused=refused(hop, 400), crashed=hop.status >= 500)
    assert refused(hop, 400) and "555 0100" not in hop.text
    hop = await fetch(other, url)  # the right browser: Entra's words, as a 403
    assert hop.status == 403 and not hop.session_cookies()
    assert upstream.seen == []


async def test_replayed_callback_on_another_replica_is_refused(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, redis_url: str) -> None:
    # Two replicas share Redis and the secret, but not their memory of used states: the
    # replay must still fail (Entra's codes are single use) and leave no session.
    first = await shield(store_config("redis", redis_url))
    second = await shield(store_config("redis", redis_url))
    original = browsers()
    callback = await at_idp(first, original, await start_login(first, original))
    name, value = login_cookie(original)
    hop = await fetch(original, callback)
    assert hop.status == 302 and hop.session_cookies() == ["azp_session"]
    thief = browsers()
    give_cookie(second, thief, name, value)
    replay = await fetch(thief, callback.replace(first.url, second.url))
    tally(FAMILY, refused=not replay.session_cookies() and replay.status >= 400,
          crashed=replay.status >= 500 and replay.status != 502)
    assert replay.status in (400, 502) and not replay.session_cookies(), replay.status
    assert not await signed_in(second, thief)
    assert upstream.seen == []


@pytest.mark.parametrize("where", ["navigation", "start", "callback"])
async def test_undecodable_login_cookie_is_refused_not_a_crash(
        shield: ShieldFactory, upstream: Upstream, caplog: pytest.LogCaptureFixture,
        where: str) -> None:
    # Bytes that are not UTF-8 in a login-state cookie (a sibling subdomain can set one for
    # the whole domain): a navigation must still start a sign-in, and a callback must be a
    # 400, never a 500.
    caplog.set_level(logging.DEBUG)
    stack = await shield()
    state = secrets.token_urlsafe(32)
    target = {"navigation": "/page", "start": "/oauth2/start?rd=/page",
              "callback": f"/callback/azuread?code=0.AX&state={state}"}[where]
    host = stack.url.removeprefix("http://")
    request = (f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\n"
               f"Cookie: {LOGIN_PREFIX}{state}=").encode() + b"\xff\xfe.x.y" + \
        b"\r\nConnection: close\r\n\r\n"
    exchange = await raw_exchange(port_of(stack), request)
    status = exchange.statuses[0] if exchange.statuses else 0
    want = 400 if where == "callback" else 302
    tally(FAMILY, refused=status == want, crashed=status >= 500 or status == 0)
    assert status == want, status
    if want == 302:
        assert exchange.responses[0].header("Location").startswith(stack.idp)
    assert tracebacks(caplog.records) == []
    assert upstream.seen == [] and stack.mock.token_requests == []


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_classic_callback_csrf_shapes_hold_with_server_side_sessions(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, redis_url: str,
        store: str) -> None:
    # tests/flows/test_login_security.py proves these with the cookie store; the login state
    # is the same cookie with every store, and so must be the answers.
    stack = await shield(store_config(store, redis_url))
    victim, attacker = browsers(), browsers()
    attacker_callback = await at_idp(stack, attacker, await start_login(stack, attacker))
    await start_login(stack, victim)  # a pending login of the victim's own does not help
    shapes = {
        "missing-state": (victim, stack.url + "/callback/azuread?code=0.AX"),
        "foreign-state": (victim, attacker_callback),  # login CSRF: another browser's callback
        "never-started": (victim, f"{stack.url}/callback/azuread?code=0.AX&state="
                                  f"{secrets.token_urlsafe(32)}"),
    }
    for name, (browser, url) in shapes.items():
        hop = await fetch(browser, url)
        tally(FAMILY, refused=refused(hop, 400), crashed=hop.status >= 500)
        assert refused(hop, 400), (name, hop.status)
    assert stack.mock.token_requests == []
    done = await fetch(attacker, attacker_callback)  # the right browser still signs in
    assert done.status == 302 and done.session_cookies() == ["azp_session"]
    replay = await fetch(attacker, attacker_callback)
    tally(FAMILY, refused=refused(replay, 400), crashed=replay.status >= 500)
    assert refused(replay, 400)
    assert not await signed_in(stack, victim)
    assert len(stack.mock.token_requests) == 1 and upstream.seen == []
