"""`azure-auth-proxy run` serving TLS as a real process, with one worker and with two
(SO_REUSEPORT, each worker its own context): SIGHUP makes every worker serve the renewed
certificate to new connections, even when the config it also re-reads is broken, and the
plain HTTP listener answers 308 to https."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from proxy.mock_entra import MockEntra
from tests.conftest import free_port, wait_ready
from tests.support.proxy_toml import write_proxy_toml
from tests.support.server_pki import TestCa, served_serial, wait_for_serial


@pytest.mark.parametrize("workers", [1, 2])
async def test_sighup_renews_the_certificate_in_every_worker(
        workers: int, tmp_path: Path, mock_server: tuple[MockEntra, str],
        upstream_url: str) -> None:
    _, idp = mock_server
    ca = TestCa(tmp_path)
    first = ca.issue()
    port, plain = free_port(), free_port()
    config = write_proxy_toml(tmp_path / "proxy.toml", port, idp, upstream_url, {
        "server": {"public_url": f"https://127.0.0.1:{port}", "workers": workers,
                   "tls_cert_file": str(ca.cert_file), "tls_key_file": str(ca.key_file),
                   "tls_watch_interval": "0",  # SIGHUP only: what this test is about
                   "header_timeout": "1s",  # bounds the TLS handshake too
                   "http_redirect_listen": f"127.0.0.1:{plain}"},
        "session": {"secure": True},
        "identity": {"assertion_header": ""}})  # several workers would need a shared key
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    log_file = tmp_path / "stderr.log"
    with log_file.open("wb") as stderr:  # a file: a pipe nobody reads could fill and block
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    url, client = f"https://127.0.0.1:{port}", ca.client_context()
    try:
        await wait_ready(url, client)
        assert await served_serial(port, client) == first
        # A client that connects and never starts the handshake: closed after
        # header_timeout (asyncio's own handshake timeout would hold it 60 s).
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 20) == b""
        writer.close()
        async with aiohttp.ClientSession() as browser:
            async with browser.get(f"http://127.0.0.1:{plain}/a?b=1",
                                   allow_redirects=False) as resp:
                assert resp.status == 308
                assert resp.headers["Location"] == f"{url}/a?b=1"
        second = ca.issue()
        good = config.read_text()
        config.write_text("this is [not TOML\n")  # the config reload fails; the pair does not
        proc.send_signal(signal.SIGHUP)
        await wait_for_serial(port, client, second)
        # Every worker reloaded: new connections (spread over the workers by the kernel)
        # are all served the new certificate.
        serials = {await served_serial(port, client) for _ in range(30)}
        assert serials == {second}
        config.write_text(good)
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client)) as browser:
            async with browser.get(url + "/ping") as resp:
                assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    log = log_file.read_text(errors="replace")
    assert proc.returncode == 0, log[-2000:]
    assert log.count("tls: SIGHUP: certificate reloaded") == workers
    assert log.count("config reload refused, keeping the running config") == workers
    assert "BEGIN" not in log  # no key or certificate material in the log
