"""Fixtures for the fault tests: misbehaving upstreams, a route layout over them, and proxy
processes that are always stopped (tests/faults/support.py has the pieces)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.mock_entra import MockEntra
from tests.conftest import ALICE, deep_merge, free_port
from tests.faults.support import (
    WS_FINISHED,
    BrokenUpstream,
    ProxyProcess,
    serve_app,
    ws_fault_app,
)


class WsUpstream:
    def __init__(self, url: str, finished: list[str]) -> None:
        self.url = url
        self.finished = finished


@pytest.fixture
async def broken_upstream() -> AsyncIterator[BrokenUpstream]:
    server = BrokenUpstream()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def ws_upstream() -> AsyncIterator[WsUpstream]:
    app = ws_fault_app()
    runner, url = await serve_app(app)
    yield WsUpstream(url, app[WS_FINISHED])
    await runner.cleanup()


@pytest.fixture
def fault_routes(upstream_url: str, broken_upstream: BrokenUpstream,
                 ws_upstream: WsUpstream) -> dict[str, Any]:
    """/ → the echo upstream; /refused → a closed port; /broken/<kind> → BrokenUpstream;
    /slow (1 s timeout) → the echo upstream's /slow; /stalled/<kind> (1 s) → BrokenUpstream;
    /wsfault/ws-abort|ws-echo → WebSockets that die or echo."""
    return {"upstreams": [
        {"path": "/", "url": upstream_url},
        {"path": "/refused", "url": f"http://127.0.0.1:{free_port()}"},
        {"path": "/broken", "url": broken_upstream.url, "strip_prefix": True},
        {"path": "/slow", "url": upstream_url, "timeout": "1s"},
        {"path": "/stalled", "url": broken_upstream.url, "strip_prefix": True,
         "timeout": "1s"},
        {"path": "/wsfault", "url": ws_upstream.url, "strip_prefix": True},
    ]}


ProcessFactory = Callable[..., Awaitable[ProxyProcess]]


@pytest.fixture
async def proxy_processes(tmp_path: Path, mock_server: tuple[MockEntra, str],
                          upstream_url: str) -> AsyncIterator[ProcessFactory]:
    """Start `python -m proxy run` processes (config: base + extra); all stopped after."""
    mock, idp = mock_server
    mock.auto_user = ALICE
    started: list[ProxyProcess] = []

    async def factory(extra: dict[str, Any] | None = None) -> ProxyProcess:
        workdir = tmp_path / f"proxy{len(started)}"
        workdir.mkdir()
        proxy = ProxyProcess(workdir, idp, upstream_url, deep_merge({}, extra or {}))
        started.append(proxy)
        await proxy.start()
        return proxy

    yield factory
    for proxy in started:
        proxy.stop()
