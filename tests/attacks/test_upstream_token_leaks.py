"""pass_authorization_header attacked over real sockets: a client's own Authorization must
never reach an upstream that trusts the header (any spelling, duplicates, public paths, a
WebSocket upgrade), one user's token never another's request (concurrent sessions, memory
and Redis), and no token in a log line."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import aiohttp
import jwt
import pytest
from yarl import URL

from proxy.mock_entra import DEFAULT_CLIENT_ID
from tests.attacks.harness import raw_exchange, tally
from tests.conftest import ALICE, Browsers, Stack, StackFactory, deep_merge, port_of
from tests.support import token_upstream as support
from tests.support.token_upstream import (
    API_ID,
    API_SCOPE,
    JSON,
    TokenUpstream,
    register_api,
    token_config,
)

token_upstream = support.token_upstream
token_stack = support.token_stack
BOB = "bob@contoso.example"
MINE = "Bearer client-chosen.token.value"


@pytest.fixture
def stack(token_stack: Stack) -> Stack:
    return token_stack


async def signed_in(stack: Stack, client: aiohttp.ClientSession, user: str) -> str:
    """Sign `user` in on `client`; the Cookie header its session rides in."""
    stack.mock.auto_user = user
    async with client.get(stack.url + "/oauth2/start?rd=/healthz") as resp:
        assert resp.status == 200
    cookies = client.cookie_jar.filter_cookies(URL(stack.url))
    return "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())


# Each: the header lines a client adds (CRLF-joined), then the path.
SPELLINGS = [
    f"Authorization: {MINE}",
    f"authorization: {MINE}",
    f"AUTHORIZATION: {MINE}",
    f"Authorization: {MINE}\r\nAuthorization: {MINE}2",
    f"aUtHoRiZaTiOn: {MINE}\r\nauthorization: {MINE}2",
    f"Authorization: {MINE}\r\n continued-by-obs-fold",
    f"Authorization : {MINE}",
    f"Authorization:\t{MINE}",
    f"Authorization: {MINE}\r\nProxy-Authorization: {MINE}3\r\nConnection: close, authorization",
]


@pytest.mark.parametrize("path", ["/dashboards", "/healthz"])
@pytest.mark.parametrize("lines", SPELLINGS)
async def test_no_spelling_of_the_clients_authorization_reaches_the_upstream(
        stack: Stack, token_upstream: tuple[TokenUpstream, str], lines: str,
        path: str) -> None:
    upstream = token_upstream[0]
    cookie = await signed_in(stack, stack.client, ALICE)
    before = len(upstream.seen)
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port_of(stack)}\r\n"
               f"Accept: application/json\r\nCookie: {cookie}\r\n{lines}\r\n"
               "Connection: close\r\n\r\n").encode()
    exchange = await raw_exchange(port_of(stack), request)
    statuses = exchange.statuses
    sent = [value for seen in upstream.seen[before:] for value in seen]
    leaked = any("client-chosen" in value for value in sent)
    tally("client-authorization", refused=not leaked,
          crashed=not statuses or statuses[0] >= 500, reached=leaked)
    assert not leaked, sent
    assert statuses and statuses[0] < 500
    if statuses[0] == 200 and path == "/dashboards":  # the proxy's token, and only it
        assert len(upstream.seen[-1]) == 1 and upstream.seen[-1][0].startswith("Bearer ey")


async def test_a_websocket_upgrade_does_not_carry_the_clients_authorization(
        stack: Stack, token_upstream: tuple[TokenUpstream, str]) -> None:
    upstream = token_upstream[0]
    await signed_in(stack, stack.client, ALICE)
    before = len(upstream.seen)
    with pytest.raises(aiohttp.WSServerHandshakeError):  # the upstream answers 200, not 101
        await stack.client.ws_connect(stack.url + "/socket", headers={"Authorization": MINE})
    sent = [value for seen in upstream.seen[before:] for value in seen]
    tally("client-authorization", refused=bool(sent) and MINE not in sent, crashed=False,
          reached=MINE in sent)
    assert len(sent) == 1 and sent[0] != MINE and sent[0].startswith("Bearer ey")


async def test_concurrent_users_each_get_only_their_own_token(
        stack: Stack, token_upstream: tuple[TokenUpstream, str], browsers: Browsers,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    users = {ALICE: browsers(), BOB: browsers()}
    for user, browser in users.items():
        await signed_in(stack, browser, user)

    async def one(user: str, browser: aiohttp.ClientSession) -> tuple[str, str]:
        async with browser.get(stack.url + "/dashboards", headers=JSON) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return user, body["claims"]["preferred_username"]

    answers = await asyncio.gather(*(one(u, b) for _ in range(10) for u, b in users.items()))
    crossed = [a for a in answers if a[0] != a[1]]
    tally("token-crossing", refused=not crossed, crashed=False, reached=bool(crossed))
    assert not crossed
    tokens = {v.removeprefix("Bearer ") for seen in token_upstream[0].seen for v in seen}
    assert len(tokens) == 2  # one per session, fetched once each
    logged = "\n".join(r.getMessage() + str(r.__dict__.get("fields", "")) for r in caplog.records)
    assert not any(token[20:60] in logged for token in tokens)


@pytest.mark.parametrize("uri", ["/dashboards", "/healthz"])
async def test_forward_auth_never_says_yes_to_a_request_carrying_its_own_authorization(
        make_stack: StackFactory, redis_url: str,
        token_upstream: tuple[TokenUpstream, str], uri: str) -> None:
    """With forward auth the ingress, not the proxy, forwards the request, headers and all:
    a yes would hand the app (which trusts Authorization) the client's own header."""
    config = token_config(token_upstream[1], "redis", redis_url)
    config["server"] = {"trusted_proxies": ["127.0.0.1/32"]}
    stack = await make_stack(config)
    register_api(stack.mock)
    await signed_in(stack, stack.client, ALICE)
    check = stack.url + "/oauth2/auth"
    for header in (MINE, "bearer x", "Basic YTpi"):
        async with stack.client.get(check, headers={"X-Forwarded-Uri": uri,
                                                    "Authorization": header}) as resp:
            said_yes = resp.status == 202
            tally("client-authorization", refused=resp.status == 403, crashed=resp.status >= 500,
                  reached=said_yes)
            assert resp.status == 403, header
    async with stack.client.get(check, headers={"X-Forwarded-Uri": uri}) as resp:
        assert resp.status == 202  # without one, as before


OTHER_API = "a9200000-0000-4000-8000-0000000a9200"
OTHER_URI = "api://other.contoso.example"


async def test_a_token_for_another_api_is_never_sent_to_this_ones_app(
        make_stack: StackFactory, redis_url: str,
        token_upstream: tuple[TokenUpstream, str]) -> None:
    """Replicas of two configs sharing Redis (a rolling deploy that moves the route to
    another app's API; a reload does the same to one process): a session's token for the
    old API, still valid, must not reach the app the new config names."""
    upstream, upstream_url = token_upstream
    old = await make_stack(token_config(upstream_url, "redis", redis_url))
    register_api(old.mock)
    old.mock.clients[OTHER_API] = dataclasses.replace(
        old.mock.clients[API_ID], client_id=OTHER_API, identifier_uris=(OTHER_URI,))
    old.mock.clients[DEFAULT_CLIENT_ID].delegated_grants[OTHER_API] = (API_SCOPE,)
    moved = deep_merge(token_config(upstream_url, "redis", redis_url),
                       {"azure": {"upstream_scopes": [f"{OTHER_URI}/.default"]}})
    new = await make_stack(moved)
    await signed_in(old, old.client, ALICE)
    async with old.client.get(old.url + "/dashboards", headers=JSON) as resp:
        assert resp.status == 200  # the old API's token is now in the shared session
    async with old.client.get(new.url + "/dashboards", headers=JSON) as resp:  # same cookie
        assert resp.status == 401  # the upstream only takes the old API: it refuses
    sent = upstream.seen[-1][0].removeprefix("Bearer ")
    audience = jwt.decode(sent, options={"verify_signature": False})["aud"]
    tally("token-crossing", refused=audience == OTHER_API, crashed=False,
          reached=audience == API_ID)
    assert audience == OTHER_API


async def test_a_route_without_the_option_is_unchanged_and_never_gets_the_token(
        make_stack: StackFactory, redis_url: str,
        token_upstream: tuple[TokenUpstream, str]) -> None:
    upstream, upstream_url = token_upstream
    config = token_config(upstream_url, "redis", redis_url)
    config["upstreams"].insert(0, {"path": "/plain/", "url": upstream_url})
    stack = await make_stack(config)
    register_api(stack.mock)
    await signed_in(stack, stack.client, ALICE)
    async with stack.client.get(stack.url + "/dashboards", headers=JSON) as resp:
        assert resp.status == 200  # the session now holds the API's token
    token = upstream.seen[-1][0]
    for headers in ({"Authorization": MINE}, {}):
        async with stack.client.get(stack.url + "/plain/x", headers={**JSON, **headers}):
            pass
        sent = upstream.seen[-1]
        tally("token-crossing", refused=token not in sent, crashed=False, reached=token in sent)
        assert sent == ([MINE] if headers else [])  # the client's own, as before; never ours
