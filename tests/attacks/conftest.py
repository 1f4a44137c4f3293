"""Fixtures of the attack suites: the proxy in front of a recording upstream, browsers, stores."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tests.attacks.harness import (
    TALLY,
    TOUCHED,
    Upstream,
    start_upstream,
    summary_lines,
    tally_tracebacks,
    tracebacks,
)
from tests.conftest import ALICE, Stack, StackFactory, deep_merge

PUBLIC = ["^/healthz$", "^/public/"]
ShieldFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture(autouse=True)
def count_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every log record of every attack test is captured; tracebacks count as crashes."""
    caplog.set_level(logging.DEBUG)
    TOUCHED.clear()
    yield
    tally_tracebacks(len(tracebacks(caplog.get_records("call"))))


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    recorder, server = await start_upstream()
    yield recorder
    await server.close()


@pytest.fixture
async def shield(make_stack: StackFactory, upstream: Upstream) -> ShieldFactory:
    """A proxy whose every route leads to the recording upstream."""

    async def factory(extra: dict[str, Any] | None = None,
                      routes: list[dict[str, Any]] | None = None) -> Stack:
        table = routes or [{"path": "/", "public": PUBLIC}]
        upstreams = [{"url": upstream.url, **route} for route in table]
        return await make_stack(deep_merge({"upstreams": upstreams}, extra or {}))

    return factory


async def sign_in(stack: Stack, user: str = ALICE,
                  client: aiohttp.ClientSession | None = None) -> aiohttp.ClientSession:
    """Sign `user` in without touching the upstream; the browser now holds a session."""
    browser = client or stack.client
    stack.mock.auto_user = user
    async with browser.get(stack.url + "/oauth2/start?rd=/oauth2/userinfo") as resp:
        assert resp.status == 200, (resp.status, await resp.text())
        assert (await resp.json())["preferred_username"] == user
    return browser


def store_config(store: str, redis_url: str) -> dict[str, Any]:
    if store == "redis":
        return {"session": {"store": "redis", "redis_url": redis_url}}
    return {"session": {"store": store}}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY:
        terminalreporter.section("attacks: tried / refused / crashed (5xx, tracebacks) / reached")
        for line in summary_lines():
            terminalreporter.write_line(line)
