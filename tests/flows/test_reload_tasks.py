"""A config reload's background work belongs to the app: the replaced session store is
retired (still serving in-flight requests) and closed when the app shuts down, never left
open or run against closed clients."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy.app import TASKS, build_app, reload
from proxy.config_load import from_dict
from proxy.errors import StoreUnavailable
from proxy.mock_entra import MockEntra
from proxy.state import STATE
from tests.conftest import Stack, base_config, deep_merge, free_port


async def test_a_retired_store_is_closed_at_shutdown(mock_server: tuple[MockEntra, str],
                                                     upstream_url: str,
                                                     redis_url: str) -> None:
    mock, idp = mock_server
    port = free_port()
    raw: dict[str, Any] = deep_merge(base_config(port, idp, upstream_url),
                                     {"session": {"store": "redis", "redis_url": redis_url}})
    # Another [session]: the reload builds a new store and retires the old one.
    changed = deep_merge(raw, {"session": {"max_age": "4h"}})
    config = from_dict(raw)
    app = build_app(config)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        stack = Stack(mock, config, url, idp, upstream_url, client)
        assert (await stack.login()).status == 200
        cookies = {c.key: c.value for c in client.cookie_jar.filter_cookies(URL(url)).values()}
    old = app[STATE].current.sessions
    assert await old.load(cookies) is not None
    try:
        assert await reload(app, lambda: from_dict(changed))
        assert app[STATE].current.sessions is not old
        assert len(app[TASKS]) == 1  # the retirement, held by the app
        assert await old.load(cookies) is not None  # in-flight requests still read it
    finally:
        await server.close()
    assert len(app[TASKS]) == 0
    with pytest.raises(StoreUnavailable):
        await old.load(cookies)  # closed at shutdown, not 60 s later or never


async def test_a_reload_says_which_connection_limits_wait_for_a_restart(
        mock_server: tuple[MockEntra, str], upstream_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """header_timeout, keepalive_timeout and max_connections are built into the listener:
    a reload keeps the running ones and says so, key by key."""
    _, idp = mock_server
    port = free_port()
    raw = base_config(port, idp, upstream_url)
    changed = deep_merge(raw, {"server": {"header_timeout": "5s", "max_connections": 50}})
    app = build_app(from_dict(raw))
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        assert await reload(app, lambda: from_dict(changed))
    finally:
        await server.close()
    restart = [r.getMessage() for r in caplog.records if "after a restart" in r.getMessage()]
    assert restart == ["config reload: server.header_timeout changes take effect after a restart",
                       "config reload: server.max_connections changes take effect after a "
                       "restart"]
