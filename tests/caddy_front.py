"""A real Caddy (Debian's `caddy`, 2.6+, installed by `make test`) in front of the proxy.

It runs the shipped recipe, deploy/caddy/Caddyfile, with only its hosts and ports changed
to loopback ones, so the tests prove the file users copy, not a look-alike. A global
options block goes first: no admin endpoint, no automatic HTTPS (plain http on loopback),
listen on 127.0.0.1 only, and state under the test's tmp dir (Caddy writes to HOME/XDG).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from yarl import URL

CADDYFILE = Path(__file__).resolve().parents[1] / "deploy" / "caddy" / "Caddyfile"
# The recipe's layout (see its header comment): the public site, the proxy and the app.
SITE, PROXY, APP = "tools.example.com {", "127.0.0.1:4180", "127.0.0.1:8080"
GLOBAL = """{{
\tadmin off
\tauto_https off
\tdefault_bind 127.0.0.1
\tstorage file_system {data}
}}
"""


def render(port: int, proxy_port: int, app_url: str, data: Path) -> str:
    """The shipped Caddyfile for Caddy on 127.0.0.1:port, the proxy and the app on theirs."""
    text = CADDYFILE.read_text()
    app = URL(app_url)
    assert app.host == "127.0.0.1" and app.scheme == "http", app_url
    for needle in (SITE, PROXY, APP):
        # The recipe changed shape: make this substitution follow it, never drop it.
        assert needle in text, f"{CADDYFILE} no longer has {needle!r}"
    text = (text.replace(SITE, f"http://127.0.0.1:{port} {{")
            .replace(PROXY, f"127.0.0.1:{proxy_port}")
            .replace(APP, f"127.0.0.1:{app.port}"))
    return GLOBAL.format(data=data) + text


@asynccontextmanager
async def caddy(tmp: Path, port: int, proxy_port: int, app_url: str) -> AsyncIterator[str]:
    """Caddy serving the rendered recipe; yields its URL once it answers."""
    binary = shutil.which("caddy") or "/usr/bin/caddy"
    assert Path(binary).exists(), "caddy missing: `make test` installs it (apt-get install caddy)"
    config = tmp / "Caddyfile"
    config.write_text(render(port, proxy_port, app_url, tmp / "data"))
    env = {**os.environ, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "config"),
           "XDG_DATA_HOME": str(tmp / "data")}
    log = (tmp / "caddy.log").open("wb")
    proc = subprocess.Popen([binary, "run", "--config", str(config), "--adapter", "caddyfile"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as probe:
            for _ in range(200):
                try:
                    # /oauth2/jwks goes straight to the proxy: up once Caddy listens.
                    async with probe.get(url + "/oauth2/jwks") as resp:
                        await resp.read()
                        break
                except aiohttp.ClientConnectionError:
                    assert proc.poll() is None, (tmp / "caddy.log").read_text()
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("caddy did not answer: " + (tmp / "caddy.log").read_text())
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
