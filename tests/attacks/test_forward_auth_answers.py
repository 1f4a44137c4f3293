"""What /oauth2/auth answers: Entra's tokens and the assertion only to a trusted forward-auth
peer, never to a browser (issue 17.2); identity values cleaned like forwarded ones, and
group lists that stay unambiguous when a name holds a comma (issue 16.8)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest

from tests.attacks.conftest import ShieldFactory, sign_in
from tests.attacks.harness import Upstream, tally
from tests.conftest import ALICE, HTML, Browsers, Stack

FAMILY = "forward-auth-answers"
SECRET_HEADERS = ("X-Forwarded-Access-Token", "X-Forwarded-Id-Token", "X-Auth-Assertion",
                  "X-MS-TOKEN-AAD-ACCESS-TOKEN", "X-MS-TOKEN-AAD-ID-TOKEN")
PASS_EVERYTHING = {"session": {"store": "memory"},
                   "identity": {"pass_access_token": True, "pass_id_token": True,
                                "easy_auth": True, "easy_auth_tokens": True}}
# The test client connects from 127.0.0.1; these try to look like a trusted proxy's peer.
LOOK_TRUSTED = [[], [("X-Forwarded-For", "10.9.9.9")], [("X-Real-IP", "10.9.9.9")],
                [("Forwarded", "for=10.9.9.9")], [("X-Forwarded-Uri", "/x"),
                                                  ("X-Forwarded-Host", "127.0.0.1")]]


async def answer(stack: Stack, browser: aiohttp.ClientSession,
                 headers: list[tuple[str, str]] | None = None) -> aiohttp.ClientResponse:
    async with browser.get(stack.url + "/oauth2/auth", headers=headers or []) as resp:
        await resp.read()
        return resp


def secrets_in(resp: aiohttp.ClientResponse, stack: Stack) -> list[str]:
    """Token or assertion headers in the answer, and any issued token's value anywhere."""
    found = [name for name in SECRET_HEADERS if name in resp.headers]
    raw = str(resp.headers)
    for issued in stack.mock.issued:
        found += [kind for kind in ("access_token", "id_token", "refresh_token")
                  if issued.get(kind) and str(issued[kind]) in raw]
    return found


async def test_tokens_and_assertion_never_reach_a_browser(
        shield: ShieldFactory, browsers: Browsers, upstream: Upstream) -> None:
    stack = await shield({**PASS_EVERYTHING, "server": {"trusted_proxies": ["10.0.0.0/8"]}})
    alice = await sign_in(stack, ALICE, browsers())
    leaked = []
    for disguise in LOOK_TRUSTED:
        resp = await answer(stack, alice, disguise)
        found = secrets_in(resp, stack)
        tally(FAMILY, refused=resp.status == 202 and not found, crashed=resp.status >= 500,
              reached=bool(found))
        assert resp.status == 202
        assert resp.headers["X-Auth-Request-User"] == ALICE  # the identity itself is fine
        leaked += found
    assert leaked == []
    assert upstream.seen == []


async def test_a_trusted_forward_auth_peer_gets_them(
        shield: ShieldFactory, browsers: Browsers) -> None:
    """The other side of the rule: nginx/Traefik/Caddy (trusted_proxies) still get them."""
    stack = await shield({**PASS_EVERYTHING, "server": {"trusted_proxies": ["127.0.0.1/32"]}})
    alice = await sign_in(stack, ALICE, browsers())
    resp = await answer(stack, alice)
    assert resp.status == 202
    assert set(secrets_in(resp, stack)) >= {*SECRET_HEADERS, "access_token", "id_token"}


# Claims as a hostile or careless directory might hold them (Entra allows most of these in
# display names; group names arrive when the app is set to emit them).
HOSTILE: dict[str, Any] = {
    "preferred_username": "eve@contoso.example\r\nX-Auth-Request-User: admin@contoso.example",
    "name": "Eve\x00\x1b[31m Admin\x7f",
    "email": "eve\x00\x1b[2K@contoso.example",
    "groups": ["Sales, EMEA", "R&D %2C lab", "plain", "a,b,c"],
}


@pytest.mark.parametrize("claim", sorted(HOSTILE))
async def test_answers_are_cleaned_like_forwarded_headers(
        claim: str, shield: ShieldFactory, browsers: Browsers, upstream: Upstream) -> None:
    stack = await shield({"server": {"trusted_proxies": ["127.0.0.1/32"]}})
    stack.mock.faults.id_token_claims = {claim: HOSTILE[claim]}
    stack.mock.auto_user = ALICE
    browser = browsers()
    async with browser.get(stack.url + "/oauth2/start?rd=/oauth2/userinfo") as resp:
        assert resp.status == 200
    resp = await answer(stack, browser)
    async with browser.get(stack.url + "/x", headers=HTML) as forwarded:
        assert forwarded.status == 200
    sent = upstream.seen[-1]
    values = [v for k, v in resp.headers.items() if k.lower().startswith("x-")]
    values += [v for k, v in sent.headers if k.lower().startswith("x-forwarded-")]
    dirty = [v for v in values if not v.isprintable()]
    tally(FAMILY, refused=resp.status == 202 and not dirty, crashed=resp.status >= 500,
          reached=bool(dirty) or "admin@contoso.example" in resp.headers.getall(
              "X-Auth-Request-User", []))
    assert resp.status == 202 and dirty == []
    assert resp.headers.getall("X-Auth-Request-User") == [
        resp.headers["X-Auth-Request-User"]]  # one value: no header was injected
    if claim == "groups":
        answered = resp.headers["X-Auth-Request-Groups"]
        assert answered == "Sales%2C EMEA,R&D %252C lab,plain,a%2Cb%2Cc"
        assert [unquote(g) for g in answered.split(",")] == HOSTILE["groups"]  # the rule
        assert sent.values("X-Forwarded-Groups") == [answered]  # the same on both paths
