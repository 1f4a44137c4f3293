"""A real Caddy (Debian's `caddy`, 2.6+, installed by `make test`) in front of the proxy.

It runs the shipped recipe, deploy/caddy/Caddyfile, with only its hosts and ports changed
to loopback ones, so the tests prove the file users copy, not a look-alike. A global
options block goes first: no admin endpoint, no automatic HTTPS (plain http on loopback),
listen on 127.0.0.1 only, and state under the test's tmp dir (Caddy writes to HOME/XDG).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from yarl import URL

from tests.support.fronts import front_process, require_binary

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
    binary = require_binary("caddy")
    config = tmp / "Caddyfile"
    config.write_text(render(port, proxy_port, app_url, tmp / "data"))
    (tmp / "config").mkdir(exist_ok=True)
    # Caddy logs to stderr only: its own `log` directive would change the recipe, so the
    # log file named on failure is the one it is told to write below.
    text = config.read_text().replace("\tstorage file_system", f"\tlog {{\n\t\toutput file "
                                      f"{tmp / 'caddy.log'}\n\t}}\n\tstorage file_system", 1)
    config.write_text(text)
    env = {**os.environ, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "config"),
           "XDG_DATA_HOME": str(tmp / "data")}
    url = f"http://127.0.0.1:{port}"
    # /oauth2/jwks goes straight to the proxy: it answers once Caddy listens.
    async with front_process([binary, "run", "--config", str(config), "--adapter", "caddyfile"],
                             url, tmp / "caddy.log", probe="/oauth2/jwks", env=env, cwd=tmp):
        yield url
