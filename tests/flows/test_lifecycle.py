"""The proxy process: SIGTERM drains in-flight requests, SIGHUP reloads the config."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.mock_entra import MockEntra
from tests.conftest import ALICE, HTML, free_port, wait_ready
from tests.support.proxy_toml import write_proxy_toml


def settings(header: str, title: str) -> dict[str, Any]:
    """What the SIGHUP test changes: the identity header's name and the pages' title."""
    return {"server": {"drain_timeout": "10s"},
            "identity": {"headers": {header: "preferred_username"}}, "ui": {"title": title}}


class ProxyProcess:
    def __init__(self, tmp_path: Path, idp: str, upstream: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.idp, self.upstream = idp, upstream
        self.config = tmp_path / "proxy.toml"
        self.log = tmp_path / "proxy.log"
        self.write(settings("X-Who", "First"))
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "proxy", "run", "-c", str(self.config)],
                stdout=subprocess.DEVNULL, stderr=log)

    def write(self, extra: dict[str, Any] | None = None, text: str | None = None) -> None:
        if text is not None:
            self.config.write_text(text)
        else:
            write_proxy_toml(self.config, self.port, self.idp, self.upstream, extra)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)


@pytest.fixture
async def proxy_process(tmp_path: Path, mock_server: tuple[MockEntra, str],
                        upstream_url: str) -> AsyncIterator[ProxyProcess]:
    mock, idp = mock_server
    mock.auto_user = ALICE
    proxy = ProxyProcess(tmp_path, idp, upstream_url)
    try:
        await wait_ready(proxy.url)
        yield proxy
    finally:
        if proxy.proc.poll() is None:
            proxy.proc.kill()
        proxy.proc.wait(timeout=10)


async def test_sighup_reloads_without_dropping_sessions(proxy_process: ProxyProcess) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(proxy_process.url + "/a", headers=HTML) as resp:
            headers = (await resp.json())["headers"]
            assert headers["X-Who"] == [ALICE]
        proxy_process.write(settings("X-Who-Now", "Second"))
        proxy_process.signal(signal.SIGHUP)
        for _ in range(50):
            async with browser.get(proxy_process.url + "/b") as resp:
                headers = (await resp.json())["headers"]
            if "X-Who-Now" in headers:
                break
            await asyncio.sleep(0.1)
        assert headers["X-Who-Now"] == [ALICE]  # same session, new config
        assert "X-Who" not in headers
        proxy_process.write(text="[server]\nlisten = 'broken")  # not even TOML
        proxy_process.signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        async with browser.get(proxy_process.url + "/c") as resp:
            assert resp.status == 200
            assert (await resp.json())["headers"]["X-Who-Now"] == [ALICE]
    assert proxy_process.proc.poll() is None
    log = proxy_process.log.read_text()
    assert "config reloaded" in log and "config reload refused" in log


async def test_sigterm_lets_in_flight_requests_finish(proxy_process: ProxyProcess) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(proxy_process.url + "/a", headers=HTML) as resp:
            assert resp.status == 200
        slow = asyncio.ensure_future(browser.get(proxy_process.url + "/slow?s=1.5"))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        proxy_process.signal(signal.SIGTERM)
        resp = await slow
        assert resp.status == 200 and await resp.text() == "late"
        resp.release()
    proxy_process.proc.wait(timeout=15)
    assert time.monotonic() - started < 10
    assert proxy_process.proc.returncode == 0
