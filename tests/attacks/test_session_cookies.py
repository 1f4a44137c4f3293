"""Hostile session cookies are "not signed in", for the cookie store and the server-side ones.

Each store gets two real sessions (alice, bob) to cut, splice and re-sign; every forgery is
sent to /oauth2/userinfo and to a protected path. The answer must be 401, nothing may reach
the upstream, and nothing may crash (no 5xx, no traceback in the log).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import zlib

import aiohttp
import pytest

from proxy.mock_entra import DEFAULT_CLIENT_ID
from proxy.session import signing
from proxy.session.signing import LOGIN_SALT, app_salt, serializer
from tests.attacks.conftest import ShieldFactory, sign_in, store_config
from tests.attacks.harness import Upstream, raw_exchange, tally, tracebacks
from tests.conftest import ALICE, SECRET, Browsers, Stack, port_of

BOB = "bob@contoso.example"
STORES = ["cookie", "memory", "redis"]
ID_SALT = app_salt("azp.session.id", DEFAULT_CLIENT_ID)  # proxy.session.server_store.ID_SALT
SESSION_SALT = app_salt(signing.SESSION_SALT, DEFAULT_CLIENT_ID)
OTHER_SECRET = "another-secret-that-is-long-enough-0123456789"
IDENTITY = {"oid": "00000000-0000-0000-0000-00000000000a",
            "tid": "11111111-1111-4111-8111-111111111111",
            "preferred_username": "mallory@contoso.example", "groups": [], "roles": ["Admin"]}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def session_value(browser: aiohttp.ClientSession) -> str:
    return next(c.value for c in browser.cookie_jar if c.key == "azp_session")


def forgeries(store: str, alice: str, bob: str) -> dict[str, str]:
    """Cookie headers that must not be a session (alice's and bob's cookies are genuine)."""
    payload, stamp, signature = alice.rsplit(".", 2)  # a payload may start with "." (zlib)
    rest = f"{stamp}.{signature}"
    own_shape: object = IDENTITY if store == "cookie" else secrets.token_urlsafe(32)
    # What a replica with the other kind of store would mint with the same secret.
    other_store = (serializer([SECRET], ID_SALT).dumps(secrets.token_urlsafe(32))
                   if store == "cookie" else serializer([SECRET], SESSION_SALT).dumps(IDENTITY))
    cases = {
        "empty": "",
        "garbage": "garbage",
        "dots": "...",
        "three-parts": "a.b.c",
        "random-token": secrets.token_urlsafe(64),
        "long-garbage": "x" * 3900,
        "truncated-1": alice[:-1],
        "truncated-half": alice[: len(alice) // 2],
        "truncated-payload": payload,
        "extended": alice + "A",
        "extra-part": alice + ".x",
        "payload-flipped": payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + rest,
        # The first character carries six signature bits (the last one may carry only padding
        # bits, which base64 decoding ignores), so this always changes the signature.
        "signature-flipped": f"{payload}.{stamp}.{'B' if signature[0] == 'A' else 'A'}"
                             f"{signature[1:]}",
        "signature-of-bob": f"{payload}.{stamp}.{bob.rsplit('.', 1)[1]}",
        "payload-of-bob": bob.rsplit(".", 2)[0] + "." + rest,
        "unsigned-json": b64(json.dumps(IDENTITY).encode()) + ".AAAAAA.BBBBBBBB",
        "unsigned-id": b64(json.dumps(secrets.token_urlsafe(32)).encode()) + ".AAAAAA.BBBB",
        "zlib-marker": "." + b64(zlib.compress(b"[" * 100_000)) + ".AAAAAA.BBBB",
        "base64-junk": b64(secrets.token_bytes(96)),
        "other-secret": serializer([OTHER_SECRET], ID_SALT if store != "cookie"
                                   else SESSION_SALT).dumps(own_shape),
        "login-state-salt": serializer([SECRET], app_salt(LOGIN_SALT, DEFAULT_CLIENT_ID)).dumps(
            {"s": "x" * 43, "n": "n", "v": "v" * 43, "t": "/"}),
        "other-store-salt": other_store,
        "percent-encoded": alice.replace(".", "%2E"),
        "quoted": f'"{alice}x"',
    }
    headers = {name: f"azp_session={value}" for name, value in cases.items()}
    headers |= {
        "duplicate-garbage-first": f"azp_session=garbage; azp_session={alice}x",
        "chunk-splice": f"azp_session_0={alice[:40]}; azp_session_1={bob[40:]}",
        "chunk-gap": f"azp_session_0={alice[:40]}; azp_session_2={alice[40:]}",
        "chunk-overflow": "; ".join(f"azp_session_{i}=AAAA" for i in range(12)),
        "chunk-huge-index": f"azp_session_99999999={alice}",
        "oversized-39k": "azp_session=" + alice + "A" * 39_000,
    }
    return headers


async def status_of(stack: Stack, path: str, cookie: str) -> int:
    async with aiohttp.ClientSession() as anonymous, anonymous.get(
            stack.url + path, headers={"Cookie": cookie}, allow_redirects=False) as resp:
        await resp.read()
        return resp.status


@pytest.mark.parametrize("store", STORES)
async def test_forged_session_cookies_are_not_sessions(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, redis_url: str,
        caplog: pytest.LogCaptureFixture, store: str) -> None:
    caplog.set_level(logging.DEBUG)
    stack = await shield(store_config(store, redis_url))
    alice = session_value(await sign_in(stack, ALICE, browsers()))
    bob = session_value(await sign_in(stack, BOB, browsers()))
    assert await status_of(stack, "/oauth2/userinfo", f"azp_session={alice}") == 200  # oracle
    offenders = []
    for name, cookie in forgeries(store, alice, bob).items():
        for path in ("/oauth2/userinfo", "/private"):
            status = await status_of(stack, path, cookie)
            tally(f"session-cookie ({store})", refused=status == 401, crashed=status >= 500)
            if status != 401:
                offenders.append(f"{name} {path}: {status}")
    assert offenders == []
    assert upstream.seen == []
    assert tracebacks(caplog.records) == []


@pytest.mark.parametrize("store", STORES)
async def test_two_session_cookies_never_mix_identities(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, redis_url: str,
        store: str) -> None:
    # Cookie tossing sends two azp_session cookies; whichever wins, the identity is whole.
    stack = await shield(store_config(store, redis_url))
    alice = session_value(await sign_in(stack, ALICE, browsers()))
    bob = session_value(await sign_in(stack, BOB, browsers()))
    for cookie in (f"azp_session={alice}; azp_session={bob}",
                   f"azp_session={bob}; azp_session={alice}",
                   f"azp_session=garbage; azp_session={alice}",
                   f"azp_session={alice}; azp_session=garbage"):
        upstream.seen.clear()
        async with aiohttp.ClientSession() as anonymous, anonymous.get(
                stack.url + "/private", headers={"Cookie": cookie}) as resp:
            await resp.read()
        tally(f"session-cookie ({store})", refused=True, crashed=resp.status >= 500)
        assert resp.status in (200, 401), (cookie, resp.status)
        if resp.status == 200:
            arrival = upstream.seen[-1]
            users = arrival.values("X-Forwarded-User")
            assert users in ([ALICE], [BOB]), users
            oid = arrival.values("X-Forwarded-Object-Id")
            assert len(oid) == 1
            async with aiohttp.ClientSession() as check, check.get(
                    stack.url + "/oauth2/userinfo",
                    headers={"Cookie": cookie}) as info:
                assert (await info.json())["oid"] == oid[0]  # one session, whole
            assert "azp_session" not in ";".join(arrival.values("Cookie"))


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_signed_out_session_cookie_is_dead_everywhere(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, redis_url: str,
        store: str) -> None:
    stack = await shield(store_config(store, redis_url))
    browser = await sign_in(stack, ALICE, browsers())
    copy = session_value(browser)
    async with browser.get(stack.url + "/oauth2/sign_out") as resp:
        assert resp.status == 200
    for path in ("/oauth2/userinfo", "/private", "/oauth2/auth"):
        status = await status_of(stack, path, f"azp_session={copy}")
        tally(f"session-cookie ({store})", refused=status == 401, crashed=status >= 500)
        assert status == 401, path
    assert upstream.seen == []


@pytest.mark.parametrize("store", STORES)
async def test_oversized_cookie_header_is_4xx_and_the_proxy_keeps_serving(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, redis_url: str,
        store: str) -> None:
    stack = await shield(store_config(store, redis_url))
    alice = session_value(await sign_in(stack, ALICE, browsers()))
    request = (f"GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: azp_session={alice}; "
               f"pad={'A' * 100_000}\r\nConnection: close\r\n\r\n").encode()
    exchange = await raw_exchange(port_of(stack), request)
    statuses = exchange.statuses
    tally(f"session-cookie ({store})", refused=all(400 <= s < 500 for s in statuses),
          crashed=any(s >= 500 for s in statuses))
    assert statuses in ([400], [431], []) and exchange.closed, statuses
    assert upstream.seen == []
    assert await status_of(stack, "/oauth2/userinfo", f"azp_session={alice}") == 200


@pytest.mark.parametrize("store", STORES)
async def test_non_utf8_bytes_in_proxy_cookies_are_not_a_session(
        shield: ShieldFactory, upstream: Upstream, redis_url: str,
        caplog: pytest.LogCaptureFixture, store: str) -> None:
    # A browser sends whatever bytes a cookie holds; the proxy must still answer "not signed
    # in" rather than fail on them (the session id is decoded as UTF-8 by itsdangerous).
    caplog.set_level(logging.DEBUG)
    stack = await shield(store_config(store, redis_url))
    expected = {"/private": 401, "/oauth2/userinfo": 401, "/oauth2/auth": 401,
                "/oauth2/sign_out": 200, "/oauth2/frontchannel_logout?sid=abc": 200}
    wrong = {}
    for path, want in expected.items():
        for cookie in (b"azp_session=\xff", b"azp_session=caf\xe9.x.y",
                       b"azp_session_0=\xff\xfe"):
            request = (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: "
                       + cookie + b"\r\nConnection: close\r\n\r\n")
            exchange = await raw_exchange(port_of(stack), request)
            status = exchange.statuses[0] if exchange.statuses else 0
            tally(f"session-cookie ({store})", refused=status == want,
                  crashed=status >= 500 or status == 0)
            if status != want:
                wrong[f"GET {path} Cookie: {cookie!r}"] = status
    assert wrong == {}, sorted(wrong.items())
    assert upstream.seen == []
    assert tracebacks(caplog.records) == []
