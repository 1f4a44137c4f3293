"""A proxy started with flags and env (no file for them) keeps both across a SIGHUP reload:
the reload re-reads the file and re-applies the same flags and environment on top."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, MockEntra
from tests.conftest import ALICE, HTML, SECRET, free_port, wait_ready

Running = tuple[str, Path, "subprocess.Popen[bytes]"]  # url, config file, process

# The file names a dead upstream and its own header; the --upstream flag must win over it
# before and after the reload, or requests would fail with 502.
FILE = """
[identity]
headers = {{ "{header}" = "preferred_username" }}
[[upstreams]]
url = "http://127.0.0.1:{dead_port}"
"""


@pytest.fixture
async def flagged_proxy(tmp_path: Path, mock_server: tuple[MockEntra, str],
                        upstream_url: str) -> AsyncIterator[Running]:
    mock, idp = mock_server
    mock.auto_user = ALICE
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "proxy.toml"
    config.write_text(FILE.format(header="X-Who", dead_port=free_port()), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    env.update({"PROXY_AZURE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
                "PROXY_SESSION_SECRET": SECRET, "PROXY_SESSION_SECURE": "false"})
    log = (tmp_path / "proxy.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "run", "-c", str(config),
         "--listen", f"127.0.0.1:{port}", "--public-url", url,
         "--client-id", DEFAULT_CLIENT_ID, "--tenant-id", DEFAULT_TENANT_ID,
         "--cloud-instance", f"{idp}/", "--upstream", upstream_url],
        stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        await wait_ready(url)
        yield url, config, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        log.close()


async def test_sighup_reapplies_flags_and_env(
        tmp_path: Path, flagged_proxy: Running) -> None:
    url, config, proc = flagged_proxy
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(url + "/a", headers=HTML) as resp:
            assert resp.status == 200
            assert (await resp.json())["headers"]["X-Who"] == [ALICE]
        config.write_text(FILE.format(header="X-Who-Now", dead_port=free_port()),
                          encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        headers: dict[str, list[str]] = {}
        for _ in range(50):
            async with browser.get(url + "/b") as resp:
                assert resp.status == 200  # still the --upstream flag's upstream
                headers = (await resp.json())["headers"]
            if "X-Who-Now" in headers:
                break
            await asyncio.sleep(0.1)
        assert headers["X-Who-Now"] == [ALICE]  # the file was re-read...
        async with browser.get(url + "/c") as resp:  # ...the session (env secret) survived
            assert resp.status == 200
    assert proc.poll() is None
    log = (tmp_path / "proxy.log").read_text()
    assert "config reloaded" in log and "config reload refused" not in log
