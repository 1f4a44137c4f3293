"""National cloud aliases (issue 18 item 4), over real sockets on loopback.

Discovery fetched from an alias host (login.chinacloudapi.cn, login.usgovcloudapi.net,
login.windows.net) lists endpoints on that host but names the canonical host in its issuer
(for example https://login.partner.microsoftonline.cn/{tenantid}/v2.0). The proxy accepts
exactly those alias -> canonical pairs. The mock is reached under the real host names through
a resolver that answers 127.0.0.1 for them alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from proxy.app import build_app
from proxy.config import Config
from proxy.config_load import from_dict
from proxy.mock_entra import DEFAULT_TENANT_ID, MockEntra
from tests.conftest import (
    ALICE,
    HTML,
    ProxyTestServer,
    base_config,
    free_port,
)
from tests.support.loopback_names import LoopbackNames

ALIASES = [
    ("login.chinacloudapi.cn", "login.partner.microsoftonline.cn"),
    ("login.usgovcloudapi.net", "login.microsoftonline.us"),
    ("login.windows.net", "login.microsoftonline.com"),
]
NAMES = LoopbackNames({name for pair in ALIASES for name in pair})
Start = Callable[[str], Awaitable[tuple[str, aiohttp.ClientSession]]]


@pytest.fixture
async def on_cloud_host(mock_server: tuple[MockEntra, str],
                        upstream_url: str) -> AsyncIterator[Start]:
    """Start a proxy whose cloud_instance is the mock under `host` (plain http: the https
    rule for non-loopback hosts is config_check's, not what these tests are about)."""
    _, idp = mock_server
    idp_port = int(idp.rsplit(":", 1)[1])
    opened: list[tuple[ProxyTestServer, aiohttp.ClientSession]] = []

    async def start(host: str) -> tuple[str, aiohttp.ClientSession]:
        port = free_port()
        config: Config = from_dict(base_config(port, idp, upstream_url))
        azure = dataclasses.replace(config.azure, cloud_instance=f"http://{host}:{idp_port}/")
        config = dataclasses.replace(config, azure=azure)
        server = ProxyTestServer(build_app(config, resolver=NAMES), host="127.0.0.1", port=port)
        await server.start_server()
        browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                        connector=aiohttp.TCPConnector(resolver=NAMES))
        opened.append((server, browser))
        return f"http://127.0.0.1:{port}", browser

    yield start
    for server, browser in opened:
        await browser.close()
        await server.close()


async def ready(url: str, browser: aiohttp.ClientSession) -> int:
    async with browser.get(url + "/ready") as resp:
        return resp.status


@pytest.mark.parametrize("alias,canonical", ALIASES)
async def test_alias_host_signs_in_with_the_canonical_issuer(
        on_cloud_host: Start, mock_server: tuple[MockEntra, str], alias: str,
        canonical: str) -> None:
    mock, idp = mock_server
    port = idp.rsplit(":", 1)[1]
    url, browser = await on_cloud_host(alias)
    async with browser.get(f"http://{alias}:{port}/{DEFAULT_TENANT_ID}/v2.0/"
                           ".well-known/openid-configuration") as resp:
        doc: dict[str, Any] = await resp.json()
    assert doc["issuer"] == f"http://{canonical}:{port}/{DEFAULT_TENANT_ID}/v2.0"
    assert doc["token_endpoint"].startswith(f"http://{alias}:{port}/")
    assert await ready(url, browser) == 200
    mock.auto_user = ALICE
    async with browser.get(url + "/", headers=HTML) as resp:
        assert resp.status == 200
        assert resp.history[1].url.host == alias  # the browser signed in on the alias


async def test_an_alias_may_not_name_another_clouds_issuer(
        on_cloud_host: Start, mock_server: tuple[MockEntra, str]) -> None:
    mock, idp = mock_server
    port = idp.rsplit(":", 1)[1]
    # China's alias host claiming to issue as the public cloud: not a documented pair.
    mock.faults.discovery_issuer = (f"http://login.microsoftonline.com:{port}/"
                                    f"{DEFAULT_TENANT_ID}/v2.0")
    url, browser = await on_cloud_host("login.chinacloudapi.cn")
    assert await ready(url, browser) == 503


async def test_a_canonical_host_may_not_issue_as_its_alias(
        on_cloud_host: Start, mock_server: tuple[MockEntra, str]) -> None:
    mock, idp = mock_server
    port = idp.rsplit(":", 1)[1]
    mock.faults.discovery_issuer = f"http://login.windows.net:{port}/{DEFAULT_TENANT_ID}/v2.0"
    url, browser = await on_cloud_host("login.microsoftonline.com")
    assert await ready(url, browser) == 503
    mock.faults.discovery_issuer = None
    assert await ready(url, browser) == 200  # its own name is fine
