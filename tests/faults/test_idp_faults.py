"""Entra faults during sign-in: slow, unreachable, answering nothing, and its JWKS down at a
key rotation. A login caught in the fault ends in a clear 503/504 page with a request id
and no session; sessions (and API tokens) that already exist keep working throughout, from
the keys the proxy has; when Entra is back, signing in works again."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from proxy.mock_entra import CALLER_CLIENT_ID, MockEntra, create_app
from proxy.mock_entra.keys import SigningKey, encode_jws
from proxy.oidc.client import REFETCH_INTERVAL
from tests.conftest import ALICE, HTML, Stack, StackFactory, free_port
from tests.flows.test_bearer_api import AUDIENCE, api_token

BOB = "bob@contoso.example"
API = {"api": {"accept_bearer": True, "audiences": [AUDIENCE],
               "allowed_client_ids": [CALLER_CLIENT_ID]}}


# --------------------------------------------------------------------------- helpers


@dataclass
class Answer:
    status: int
    location: str
    body: str
    request_id: str
    sets_session: bool


async def fetch(browser: aiohttp.ClientSession, url: str) -> Answer:
    """One navigation, redirects not followed; the browser's jar still takes its cookies."""
    async with browser.get(url, headers=HTML, allow_redirects=False) as resp:
        sets_session = any(re.match(r"azp_session(_\d+)?=[^;]", c)
                           for c in resp.headers.getall("Set-Cookie", []))
        return Answer(resp.status, resp.headers.get("Location", ""), await resp.text(),
                      resp.headers.get("X-Request-Id", ""), sets_session)


async def callback_url(stack: Stack, idp: str, mock: MockEntra,
                       browser: aiohttp.ClientSession, user: str = ALICE) -> str:
    """Start a login and let Entra sign `user` in: the callback URL, not yet visited."""
    start = await fetch(browser, stack.url + "/")
    assert start.status == 302 and start.location.startswith(idp + "/"), start
    mock.auto_user = user
    at_idp = await fetch(browser, start.location)
    assert at_idp.status == 302 and "/callback/azuread?" in at_idp.location, at_idp
    return at_idp.location


def visible(body: str) -> str:
    return " ".join(re.sub(r"<style>.*?</style>|<[^>]+>", " ", body, flags=re.S).split())


def assert_error_page(answer: Answer, status: int, reason: str) -> None:
    assert answer.status == status, (answer.status, visible(answer.body))
    assert not answer.sets_session and not answer.location
    assert reason in answer.body, visible(answer.body)
    assert answer.request_id and f"Request ID: {answer.request_id}" in answer.body


async def status_of(client: aiohttp.ClientSession, url: str, **headers: str) -> int:
    async with client.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status


async def signed_in(stack: Stack, browser: aiohttp.ClientSession) -> bool:
    return await status_of(browser, stack.url + "/oauth2/userinfo") == 200


async def existing_session_works(stack: Stack, browser: aiohttp.ClientSession) -> None:
    """A request, a WebSocket round trip and userinfo, each answered promptly."""
    started = time.monotonic()
    async with browser.get(stack.url + "/still-here") as resp:
        assert resp.status == 200 and (await resp.json())["path"] == "/still-here"
    async with browser.ws_connect(stack.url.replace("http", "ws") + "/ws") as ws:
        await ws.send_str("ping")
        assert await ws.receive_str(timeout=5) == "echo:ping"
    assert await signed_in(stack, browser)
    assert time.monotonic() - started < 1.5, "an existing session waited on Entra"


def signed_with(key: SigningKey, token: str) -> str:
    """The same claims, signed with `key` (and naming it in `kid`)."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return encode_jws({"typ": "JWT", "alg": "RS256", "kid": key.kid}, claims, key.sign_rs256)


async def bearer_status(stack: Stack, token: str) -> int:
    async with aiohttp.ClientSession() as client:
        return await status_of(client, stack.url + "/api/items",
                               Authorization=f"Bearer {token}")


# --------------------------------------------------------------------------- slow Entra


async def test_slow_token_endpoint_is_504_while_existing_sessions_keep_working(
        make_stack: StackFactory) -> None:
    stack = await make_stack({"azure": {"timeout": "2s"}})
    mock = stack.mock
    bob = stack.new_browser()
    newcomer = stack.new_browser()
    async with bob, newcomer:
        assert (await stack.login(BOB, client=bob)).status == 200
        callback = await callback_url(stack, stack.idp, mock, newcomer)
        mock.faults.token_delay = 5
        asked = len(mock.token_requests)
        started = time.monotonic()
        login = asyncio.ensure_future(fetch(newcomer, callback))
        while len(mock.token_requests) == asked:  # the code exchange is now hanging at Entra
            await asyncio.sleep(0.01)
        await existing_session_works(stack, bob)
        assert not login.done(), "the existing session's requests were not concurrent"
        answer = await login
        elapsed = time.monotonic() - started
        assert_error_page(answer, 504, "did not answer in time")
        assert 1.9 < elapsed < 4, elapsed  # azure.timeout = 2s, not Entra's 5 s
        assert not await signed_in(stack, newcomer)
        mock.faults.token_delay = 0
        assert (await stack.login(client=newcomer)).status == 200
        assert await signed_in(stack, newcomer)


class Blackhole:
    """Accepts TCP connections and reads forever, never answering."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            while await reader.read(65536):
                pass

        self.server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


async def test_entra_accepting_but_never_answering_is_504_within_the_timeout(
        make_stack: StackFactory) -> None:
    async with Blackhole() as idp:
        stack = await make_stack({"azure": {"timeout": "1s", "cloud_instance": idp + "/"}})
        for path in ("/", "/oauth2/start?rd=/x"):
            started = time.monotonic()
            answer = await fetch(stack.client, stack.url + path)
            assert time.monotonic() - started < 2.5
            assert_error_page(answer, 504, "did not answer in time")
        async with stack.client.get(stack.url + "/ready") as resp:
            assert resp.status == 503
            assert "did not answer in time" in (await resp.json())["reason"]


# --------------------------------------------------------------------------- Entra down


class RestartableEntra:
    """The mock Entra ID on a fixed port, which can be stopped and started again."""

    def __init__(self) -> None:
        self.mock = MockEntra()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        self.runner = web.AppRunner(create_app(self.mock), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def entra() -> AsyncIterator[RestartableEntra]:
    server = RestartableEntra()
    await server.start()
    yield server
    await server.stop()


async def test_entra_unreachable_mid_login_is_503_and_sessions_and_tokens_hold(
        make_stack: StackFactory, entra: RestartableEntra) -> None:
    stack = await make_stack({"azure": {"cloud_instance": entra.url + "/"}, **API})
    mock = entra.mock
    bob = stack.new_browser()
    newcomer = stack.new_browser()
    async with bob, newcomer:
        mock.auto_user = BOB
        async with bob.get(stack.url + "/", headers=HTML) as resp:  # keys are now cached
            assert resp.status == 200
        token = api_token(mock, entra.url)
        assert await bearer_status(stack, token) == 200
        callback = await callback_url(stack, entra.url, mock, newcomer)

        await entra.stop()
        answer = await fetch(newcomer, callback)
        assert_error_page(answer, 503, "unreachable")
        assert not await signed_in(stack, newcomer)
        await existing_session_works(stack, bob)
        # API tokens are checked against the cached keys, including one never seen before.
        assert await bearer_status(stack, token) == 200
        assert await bearer_status(stack, api_token(mock, entra.url,
                                                    oid=str(uuid.uuid4()))) == 200
        async with stack.client.get(stack.url + "/ready") as resp:
            assert resp.status == 200  # discovery and keys are loaded: no reason to drain

        await entra.start()
        mock.auto_user = ALICE
        async with newcomer.get(stack.url + "/", headers=HTML) as resp:
            assert resp.status == 200
        assert await signed_in(stack, newcomer)


# --------------------------------------------------------------------------- JWKS down at rotation


async def rotate_while_jwks_down(stack: Stack, bob: aiohttp.ClientSession,
                                 carol: aiohttp.ClientSession) -> SigningKey:
    """Bob signs in (the proxy caches the keys), the JWKS endpoint goes down, Carol signs in
    with the key the proxy has, then Entra rolls over to a new key. Returns the old key."""
    mock = stack.mock
    assert (await stack.login(BOB, client=bob)).status == 200
    old_key = mock.keys.current
    mock.faults.jwks_status = 503
    assert (await stack.login(client=carol)).status == 200
    assert await signed_in(stack, carol)
    mock.rotate_keys()
    assert mock.keys.current.kid != old_key.kid
    return old_key


async def test_login_with_a_new_key_while_jwks_is_down_is_503(make_stack: StackFactory) -> None:
    # The proxy cannot tell a forged key from a new one it cannot fetch: that is Entra being
    # unavailable (503, "try again"), not the user's token being rejected (401).
    stack = await make_stack()
    bob, carol, dan = stack.new_browser(), stack.new_browser(), stack.new_browser()
    async with bob, carol, dan:
        await rotate_while_jwks_down(stack, bob, carol)
        answer = await fetch(dan, await callback_url(stack, stack.idp, stack.mock, dan))
        assert_error_page(answer, 503, "key set (JWKS)")
        assert not await signed_in(stack, dan)


async def test_jwks_down_at_a_key_rotation_keeps_old_keys_and_recovers(
        make_stack: StackFactory) -> None:
    stack = await make_stack(API)
    mock = stack.mock
    bob, carol, dan = stack.new_browser(), stack.new_browser(), stack.new_browser()
    async with bob, carol, dan:
        old_key = await rotate_while_jwks_down(stack, bob, carol)
        # A login signed with the new key fails, and leaves no session.
        answer = await fetch(dan, await callback_url(stack, stack.idp, mock, dan))
        assert answer.status in (401, 503) and not answer.sets_session, answer
        assert answer.request_id and f"Request ID: {answer.request_id}" in answer.body
        assert not await signed_in(stack, dan)

        # Sessions, and API tokens signed with the old key, are untouched.
        await existing_session_works(stack, bob)
        await existing_session_works(stack, carol)
        assert await bearer_status(stack, signed_with(old_key, api_token(mock, stack.idp))) == 200

        # JWKS back: new-key logins work again, at the latest once the refetch limit allows.
        mock.faults.jwks_status = None
        deadline = time.monotonic() + REFETCH_INTERVAL + 5
        while True:
            answer = await fetch(dan, await callback_url(stack, stack.idp, mock, dan))
            if answer.status == 302 or time.monotonic() > deadline:
                break
            assert answer.status in (401, 503), (answer.status, answer.body[:300])
            await asyncio.sleep(1)
        assert answer.status == 302 and answer.sets_session, (answer.status, answer.body[:300])
        assert await signed_in(stack, dan)
        assert await bearer_status(stack, api_token(mock, stack.idp)) == 200  # new key
        await existing_session_works(stack, bob)
