"""The slow-client limits on the real server path, `azure-auth-proxy run` (proxy/workers.py),
not only the test server (tests/attacks/test_slowloris.py has the full matrix); and the
open-file limit a worker raises so that the cap, not EMFILE, refuses connections."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time

import aiohttp

from tests.attacks.harness import parse_responses
from tests.faults.conftest import ProcessFactory
from tests.faults.support import ProxyProcess
from tests.support.slow_clients import BEHAVIOURS, SLACK, held, open_served, send_nothing

HEADER_TIMEOUT = 1.0
CAP = 12


async def ping(proxy: ProxyProcess) -> int:
    async with aiohttp.ClientSession() as client, client.get(proxy.url + "/ping") as resp:
        return resp.status


async def test_run_times_out_slow_heads_and_caps_connections(
        proxy_processes: ProcessFactory) -> None:
    proxy = await proxy_processes({"server": {"header_timeout": f"{HEADER_TIMEOUT:g}s",
                                              "max_connections": CAP}})
    # Slow clients of every kind (fewer than the cap): each 408 and closed in time.
    crowd = [asyncio.create_task(held(proxy.port, behave, HEADER_TIMEOUT + SLACK))
             for behave in BEHAVIOURS.values() for _ in range(3)]
    await asyncio.sleep(0.2)
    assert await ping(proxy) == 200  # served while they hold their connections
    for closed_after, received in await asyncio.gather(*crowd):
        assert closed_after is not None, f"still open after {HEADER_TIMEOUT + SLACK}s"
        assert [r.status for r in parse_responses(received)[0]] == [408], received[:200]

    # The cap: CAP served keep-alive connections are held, the next ones get 503.
    holders = [await open_served(proxy.port) for _ in range(CAP)]
    try:
        refused = await asyncio.gather(*(held(proxy.port, send_nothing, SLACK)
                                         for _ in range(3)))
    finally:
        for _, writer in holders:
            writer.close()
    for closed_after, received in refused:
        assert closed_after is not None and received.startswith(b"HTTP/1.1 503"), received
    deadline = time.monotonic() + SLACK
    while True:
        try:
            if await ping(proxy) == 200:
                break
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "service did not resume after connections closed"
        await asyncio.sleep(0.1)
    log = proxy.log.read_text()
    assert log.count("connection cap reached") == 1, log[-2000:]
    assert log.count("header timeout: closed a connection") == len(crowd), log[-2000:]


RLIMIT_PROBE = """
import logging, resource, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, min(hard, int(sys.argv[1]))))
from proxy.workers import raise_file_limit
raise_file_limit(int(sys.argv[2]))
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def file_limit_after_start(hard: int, max_connections: int) -> tuple[int, str]:
    """A fresh interpreter with soft limit 256: its soft limit after raise_file_limit."""
    done = subprocess.run([sys.executable, "-c", RLIMIT_PROBE, str(hard), str(max_connections)],
                          capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout.strip()), done.stderr


def test_the_open_file_limit_is_raised_to_fit_the_cap() -> None:
    """A soft limit of 256 would refuse connections (EMFILE) long before the cap does."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or hard >= 2 * 1000 + 256, "test needs ulimit -Hn"
    soft, log = file_limit_after_start(hard if hard != resource.RLIM_INFINITY else 10**6, 1000)
    assert soft == 2 * 1000 + 256 and "WARNING" not in log, log


def test_a_hard_limit_between_one_and_two_per_connection_is_used_quietly() -> None:
    soft, log = file_limit_after_start(1500, 1000)
    assert soft == 1500 and "WARNING" not in log, log


def test_a_hard_limit_below_the_cap_is_warned_about() -> None:
    soft, log = file_limit_after_start(1024, 10000)
    assert soft == 1024  # raised as far as allowed
    assert "WARNING open-file limit 1024 is below server.max_connections" in log, log
