"""50 MB up and down through a proxy running as its own process: its memory stays flat."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from proxy.mock_entra import MockEntra
from tests.conftest import ALICE, HTML, free_port, wait_ready
from tests.support.proxy_toml import write_proxy_toml

SIZE = 50 * 1024 * 1024
PIECE = os.urandom(256 * 1024)


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


async def body() -> AsyncIterator[bytes]:
    for _ in range(SIZE // len(PIECE)):
        yield PIECE



async def test_50mb_upload_and_download_stream_with_flat_memory(
        tmp_path: Path, mock_server: tuple[MockEntra, str], upstream_url: str) -> None:
    mock, idp = mock_server
    port = free_port()
    config = write_proxy_toml(tmp_path / "proxy.toml", port, idp, upstream_url)
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url)
        mock.auto_user = ALICE
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.get(url + "/warm", headers=HTML) as resp:
                assert resp.status == 200
            baseline = rss_kib(proc.pid, "VmRSS")
            expected = hashlib.sha256(PIECE * (SIZE // len(PIECE))).hexdigest()
            async with client.post(url + "/upload", data=body()) as resp:
                echoed = await resp.json()
            assert echoed["body_size"] == SIZE and echoed["body_sha256"] == expected
            received = 0
            async with client.get(url + f"/download/{SIZE}") as resp:
                assert resp.headers["Content-Length"] == str(SIZE)
                async for chunk in resp.content.iter_chunked(1 << 20):
                    received += len(chunk)
            assert received == SIZE
            growth_mib = (rss_kib(proc.pid, "VmHWM") - baseline) / 1024
            print(f"proxy peak RSS growth: {growth_mib:.1f} MiB")
            assert growth_mib < 20, f"proxy peak RSS grew {growth_mib:.1f} MiB for 50 MB bodies"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
