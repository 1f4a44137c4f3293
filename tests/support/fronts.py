"""Fronts the proxy runs behind in tests: a real nginx (Debian package, `make test` installs
it) from one config template, and the start/wait/stop of any such front process, so a test
of another front (Caddy, Traefik) needs only its own config and argv."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.conftest import free_port

START_TIMEOUT = 20.0  # seconds; bounded, but generous for a loaded 2-core machine


def require_binary(name: str, package: str | None = None) -> str:
    """The path of `name`; its absence fails the test (never skips it) naming the package."""
    binary = shutil.which(name) or f"/usr/sbin/{name}"
    assert Path(binary).exists(), (
        f"{name} missing: `make test` installs it (apt-get install {package or name})")
    return binary


@asynccontextmanager
async def front_process(argv: Sequence[str], url: str, log: Path, probe: str = "/healthz",
                        env: Mapping[str, str] | None = None,
                        cwd: Path | None = None) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Run `argv` until the block ends; the block starts once `url + probe` answers at all
    (any status: the test judges it). A front that exits or never answers fails with `log`."""
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=None if env is None else dict(env), cwd=cwd)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as client:
            while True:
                try:
                    async with client.get(url + probe, allow_redirects=False) as resp:
                        await resp.read()
                        break
                except aiohttp.ClientConnectionError:
                    tail = log.read_text()[-2000:] if log.exists() else "(no log)"
                    assert proc.poll() is None, f"{argv[0]} exited: {tail}"
                    assert time.monotonic() < deadline, f"{argv[0]} never answered: {tail}"
                    await asyncio.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def nginx_conf(tmp: Path, port: int, server: str) -> str:
    """A whole nginx.conf: one foreground worker, every path under `tmp`, one server on
    127.0.0.1:`port` whose body (locations, directives) is `server`."""
    return f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
{server}
  }}
}}
"""


@asynccontextmanager
async def nginx(tmp: Path, server: str, port: int | None = None) -> AsyncIterator[str]:
    """A running nginx with `server` as its one server's body, on `port` (default: a free
    one); yields its URL."""
    binary = require_binary("nginx")
    port = port or free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, port, server))
    url = f"http://127.0.0.1:{port}"
    async with front_process([binary, "-c", str(conf), "-p", str(tmp)], url,
                             tmp / "error.log"):
        yield url
