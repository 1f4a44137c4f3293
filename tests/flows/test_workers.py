"""Several worker processes on one port (SO_REUSEPORT), supervised, sharing Redis sessions."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.mock_entra import MockEntra
from tests.conftest import ALICE, HTML, free_port, wait_ready
from tests.support.proxy_toml import write_proxy_toml


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


async def test_two_workers_share_the_port_sessions_metrics_and_signals(
        tmp_path: Path, mock_server: tuple[MockEntra, str], upstream_url: str,
        redis_url: str) -> None:
    mock, idp = mock_server
    key = tmp_path / "assertion.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    port, metrics_port = free_port(), free_port()
    config = write_proxy_toml(tmp_path / "proxy.toml", port, idp, upstream_url, {
        "server": {"workers": 2, "metrics_listen": f"127.0.0.1:{metrics_port}"},
        "session": {"store": "redis", "redis_url": redis_url},
        "identity": {"assertion_key_file": key}})
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url)
        for _ in range(50):
            if len(children(proc.pid)) >= 2:
                break
            await asyncio.sleep(0.1)
        workers = children(proc.pid)
        assert len(workers) >= 2, workers
        mock.auto_user = ALICE
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.get(url + "/", headers=HTML) as resp:
                assert resp.status == 200
            for _ in range(40):  # new connections spread over both workers
                async with aiohttp.ClientSession(cookie_jar=client.cookie_jar) as fresh:
                    async with fresh.get(url + "/x") as resp:
                        assert resp.status == 200
            async with client.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                text = await resp.text()
            served = sum(float(m) for m in re.findall(
                r'azp_requests_total\{route="/",status="200"\} ([0-9.]+)', text))
            assert served == 41  # summed over both workers
            os.kill(workers[0], signal.SIGKILL)  # the supervisor replaces a dead worker
            for _ in range(100):
                if len([c for c in children(proc.pid) if c != workers[0]]) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert len([c for c in children(proc.pid) if c != workers[0]]) >= 2
            await wait_ready(url)
            async with client.get(url + "/y") as resp:
                assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not children(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
