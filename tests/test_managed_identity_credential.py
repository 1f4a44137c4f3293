"""ManagedIdentityCredential against loopback endpoints that answer as told: one fetch for
concurrent callers, the cache, and answers it must refuse (too large, no token, no expiry)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from proxy.errors import CredentialUnavailable
from proxy.oidc.managed_identity import REFRESH_BEFORE, ManagedIdentityCredential
from tests.conftest import served

Answer = Callable[[], web.Response]


class Endpoint:
    def __init__(self) -> None:
        self.calls = 0
        self.answer: Answer = lambda: web.json_response(
            {"access_token": "t0k3n", "expires_on": "9999999999"})

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        await asyncio.sleep(0.05)  # long enough for concurrent callers to pile up
        return self.answer()


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, str, aiohttp.ClientSession]]:
    state = Endpoint()
    app = web.Application()
    app.router.add_get("/token", state.handle)
    async with served(app) as base, aiohttp.ClientSession() as http:
        yield state, base + "/token", http


async def test_concurrent_callers_share_one_fetch(
        endpoint: tuple[Endpoint, str, aiohttp.ClientSession]) -> None:
    state, url, http = endpoint
    credential = ManagedIdentityCredential(url)
    tokens = await asyncio.gather(*(credential.token(http) for _ in range(5)))
    assert tokens == ["t0k3n"] * 5
    assert state.calls == 1


async def test_expires_in_alone_is_cached_too(
        endpoint: tuple[Endpoint, str, aiohttp.ClientSession]) -> None:
    state, url, http = endpoint
    state.answer = lambda: web.json_response({"access_token": "t0k3n", "expires_in": 3600})
    credential = ManagedIdentityCredential(url)
    await credential.token(http)
    await credential.token(http)
    assert state.calls == 1


async def test_the_cache_ends_before_the_token_does(
        endpoint: tuple[Endpoint, str, aiohttp.ClientSession]) -> None:
    state, url, http = endpoint
    now = [1_000_000.0]
    state.answer = lambda: web.json_response(
        {"access_token": "t0k3n", "expires_on": str(int(now[0] + 3600))})
    credential = ManagedIdentityCredential(url, clock=lambda: now[0])
    await credential.token(http)
    now[0] += 3600 - REFRESH_BEFORE - 1
    await credential.token(http)
    assert state.calls == 1
    now[0] += 2  # now within REFRESH_BEFORE of the expiry
    await credential.token(http)
    assert state.calls == 2


@pytest.mark.parametrize(("body", "cause"), [
    (json.dumps({"access_token": "x" * 70_000, "expires_on": "9999999999"}), "too large"),
    (json.dumps({"expires_on": "9999999999"}), "sent no token"),
    (json.dumps({"access_token": "t0k3n", "expires_on": "soon"}), "sent no expiry"),
    ("<html>gateway</html>", "sent no token"),
])
async def test_unusable_answers_are_refused(
        endpoint: tuple[Endpoint, str, aiohttp.ClientSession], body: str, cause: str) -> None:
    state, url, http = endpoint
    state.answer = lambda: web.Response(text=body, content_type="application/json")
    credential = ManagedIdentityCredential(url)
    with pytest.raises(CredentialUnavailable) as info:
        await credential.token(http)
    assert cause in info.value.public
    assert "x" * 100 not in info.value.cause


async def test_a_failed_fetch_is_not_cached(
        endpoint: tuple[Endpoint, str, aiohttp.ClientSession]) -> None:
    state, url, http = endpoint
    state.answer = lambda: web.json_response({"error": "invalid_request"}, status=500)
    credential = ManagedIdentityCredential(url)
    with pytest.raises(CredentialUnavailable):
        await credential.token(http)
    state.answer = lambda: web.json_response({"access_token": "t0k3n", "expires_in": "3600"})
    assert await credential.token(http) == "t0k3n"
    assert state.calls == 2
