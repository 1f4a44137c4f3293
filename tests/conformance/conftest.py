"""The OpenID RP conformance suite's fixtures: a mock Entra ID whose every call is recorded
(the OIDF suite judges an RP by the calls it makes), the proxy as the RP, a recording app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from proxy.mock_entra import MockEntra, create_app
from tests.attacks.harness import Upstream, start_upstream, tracebacks
from tests.conftest import Stack, StackFactory, deep_merge


@dataclass(frozen=True)
class IdpCall:
    method: str
    path: str
    query: tuple[str, ...]  # parameter names only
    basic_auth: bool

    @property
    def endpoint(self) -> str:
        for name in ("openid-configuration", "keys", "authorize", "token", "userinfo", "logout"):
            if self.path.endswith(name):
                return name
        return "graph" if self.path.startswith("/v1.0/") else self.path


@dataclass
class IdpLog:
    calls: list[IdpCall] = field(default_factory=list)

    def endpoints(self) -> list[str]:
        return [c.endpoint for c in self.calls]

    def after_last(self, endpoint: str) -> list[str]:
        names = self.endpoints()
        if endpoint not in names:
            return names
        return names[len(names) - names[::-1].index(endpoint):]


@pytest.fixture(autouse=True)
def no_crash(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """None of the modules may crash the proxy: no traceback and no 5xx-by-error in the log."""
    caplog.set_level(logging.DEBUG)
    yield
    crashed = tracebacks(caplog.get_records("call"))
    if crashed:
        pytest.fail(f"the proxy crashed: {crashed}")


@pytest.fixture
def idp_log() -> IdpLog:
    return IdpLog()


@pytest.fixture
async def mock_server(idp_log: IdpLog) -> AsyncIterator[tuple[MockEntra, str]]:
    """tests/conftest.py's mock_server, with every request it receives written to idp_log."""
    mock = MockEntra()

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        idp_log.calls.append(IdpCall(request.method, request.path, tuple(request.query),
                                     request.headers.get("Authorization", "").startswith(
                                         "Basic ")))
        return await handler(request)

    app = create_app(mock)
    app.middlewares.append(record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield mock, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def app_upstream() -> AsyncIterator[Upstream]:
    recorder, server = await start_upstream()
    yield recorder
    await server.close()


@pytest.fixture
async def rp_factory(make_stack: StackFactory, app_upstream: Upstream) -> Any:
    async def factory(extra: dict[str, Any] | None = None) -> Stack:
        upstream = {"upstreams": [{"path": "/", "url": app_upstream.url,
                                   "public": ["^/healthz$"]}]}
        return await make_stack(deep_merge(upstream, extra or {}))
    return factory


@pytest.fixture
async def rp(rp_factory: Any) -> Stack:
    stack: Stack = await rp_factory()
    return stack


RESULTS: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RESULTS:
        terminalreporter.section("OpenID RP conformance modules")
        for module, outcome in sorted(RESULTS.items()):
            terminalreporter.write_line(f"{module:<62} {outcome}")
        counts: dict[str, int] = {}
        for outcome in RESULTS.values():
            kind = outcome.split(":")[0].split(" (")[0]
            counts[kind] = counts.get(kind, 0) + 1
        terminalreporter.write_line(
            f"{len(RESULTS)} modules: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
