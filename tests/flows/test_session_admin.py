"""Offboarding (issue 14 item 4): two proxy processes share Redis; `azure-auth-proxy sessions`
(a third process) lists and revokes, and a revoked session is refused on both replicas within
one second while everyone else's sessions live on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from proxy.mock_entra import MockEntra
from tests.conftest import ALICE, HTML, free_port, wait_ready
from tests.support.proxy_toml import write_proxy_toml
from tests.test_cli import cli

BOB = "bob@contoso.example"
BOB_OID = "b0b00000-0000-4000-8000-000000000002"
ALICE_OID = "a11ce000-0000-4000-8000-000000000001"
REVOCATION_BOUND = 1.0  # seconds: the promise, checked as a bound, not a speed


@dataclass
class Replicas:
    mock: MockEntra
    urls: tuple[str, str]
    config: Path  # replica A's proxy.toml: what an operator passes to `sessions -c`
    cookie: str  # the session cookie's name (unique per test: its own Redis namespace)


@pytest.fixture
async def replicas(tmp_path: Path, mock_server: tuple[MockEntra, str], upstream_url: str,
                   redis_url: str) -> AsyncIterator[Replicas]:
    mock, idp = mock_server
    cookie = "azp_" + secrets.token_hex(4)
    ports = (free_port(), free_port())
    paths = [write_proxy_toml(tmp_path / f"proxy{i}.toml", port, idp, upstream_url, {
        "session": {"store": "redis", "redis_url": redis_url, "cookie_name": cookie}})
        for i, port in enumerate(ports)]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    procs = [subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
             for path in paths]
    urls = (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}")
    try:
        await asyncio.gather(*(wait_ready(url) for url in urls))
        yield Replicas(mock, urls, paths[0], cookie)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


async def sign_in(replicas: Replicas, user: str) -> str:
    """Sign `user` in on replica A in a fresh browser; the session cookie's value."""
    replicas.mock.auto_user = user
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(replicas.urls[0] + "/", headers=HTML) as resp:
            assert resp.status == 200
        return next(c.value for c in browser.cookie_jar if c.key == replicas.cookie)


async def status(replicas: Replicas, url: str, cookie: str) -> int:
    """A browser's navigation carrying exactly this session cookie (no jar: nothing else)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
        async with browser.get(url + "/page", allow_redirects=False,
                               headers={**HTML, "Cookie": f"{replicas.cookie}={cookie}"}) as resp:
            await resp.read()
            return resp.status


async def refused_everywhere_within(replicas: Replicas, cookie: str, bound: float) -> bool:
    """Whether, within `bound` seconds, every replica sends this session to sign in."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    pending = list(replicas.urls)
    while pending:
        pending = [url for url in pending if await status(replicas, url, cookie) != 302]
        if pending and loop.time() >= deadline:
            return False
        if pending:
            await asyncio.sleep(0.05)
    return True


def session_id(cookie: str) -> str:
    """The opaque id inside a signed session cookie (itsdangerous: base64 JSON payload)."""
    payload = cookie.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def sessions(replicas: Replicas, *args: str) -> subprocess.CompletedProcess[str]:
    """`azure-auth-proxy sessions ARGS -c <replica A's proxy.toml>` as its own process."""
    return await asyncio.to_thread(cli, "sessions", *args, "-c", str(replicas.config),
                                   cwd=replicas.config.parent)


def listed(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    assert result.returncode == 0, result.stderr
    found: list[dict[str, object]] = json.loads(result.stdout)["sessions"]
    return found


async def test_revoking_a_user_ends_their_sessions_on_every_replica(
        replicas: Replicas) -> None:
    alice = [await sign_in(replicas, ALICE), await sign_in(replicas, ALICE)]
    bob = await sign_in(replicas, BOB)
    for url in replicas.urls:  # signed in on A, used on A and B
        for cookie in (*alice, bob):
            assert await status(replicas, url, cookie) == 200

    result = await sessions(replicas, "revoke", "--user", ALICE.upper())  # any case
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"revoked 2 sessions of {ALICE.upper()}"
    for cookie in alice:
        assert await refused_everywhere_within(replicas, cookie, REVOCATION_BOUND)
    for url in replicas.urls:
        assert await status(replicas, url, bob) == 200  # someone else's session lives on
    async with aiohttp.ClientSession() as browser:  # the refusal is a sign-in, not an error
        async with browser.get(replicas.urls[1] + "/page", allow_redirects=False, headers={
                **HTML, "Cookie": f"{replicas.cookie}={alice[0]}"}) as resp:
            assert "/oauth2/v2.0/authorize" in resp.headers["Location"]

    again = await sessions(replicas, "revoke", "--user", ALICE)
    assert again.stdout.strip() == f"revoked 0 sessions of {ALICE}"
    everyone = await sessions(replicas, "revoke", "--all", "--json")
    assert json.loads(everyone.stdout) == {"revoked": 1}
    assert await refused_everywhere_within(replicas, bob, REVOCATION_BOUND)


async def test_list_filters_by_user_and_oid_and_shows_only_an_id_prefix(
        replicas: Replicas) -> None:
    alice = await sign_in(replicas, ALICE)
    bob = await sign_in(replicas, BOB)
    everyone = listed(await sessions(replicas, "list", "--json"))
    assert sorted(str(s["user"]) for s in everyone) == [ALICE, BOB]
    by_user = listed(await sessions(replicas, "list", "--user", "Alice@Contoso.Example",
                                    "--json"))
    assert [(s["user"], s["oid"]) for s in by_user] == [(ALICE, ALICE_OID)]
    by_oid = listed(await sessions(replicas, "list", "--oid", BOB_OID, "--json"))
    assert [s["user"] for s in by_oid] == [BOB]
    assert by_oid[0]["id"] == session_id(bob)[:8]
    entry = by_user[0]
    assert float(str(entry["created"])) <= float(str(entry["last_seen"])) \
        < float(str(entry["expires"]))

    table = await sessions(replicas, "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "PREFIX", "USER"] and lines[-1] == "2 sessions"
    for cookie in (alice, bob):  # neither the cookie nor the full id, only its first 8
        assert cookie not in table.stdout and session_id(cookie) not in table.stdout
        assert session_id(cookie)[:8] in table.stdout
    assert listed(await sessions(replicas, "list", "--user", "nobody@contoso.example",
                                 "--json")) == []


async def test_a_store_that_cannot_be_reached_from_the_cli_says_so(tmp_path: Path) -> None:
    for store, expected in (("cookie", "revocation needs a server-side store"),
                            ("memory", "admin listener")):
        path = write_proxy_toml(tmp_path / f"{store}.toml", free_port(), "http://127.0.0.1:9",
                                "http://127.0.0.1:9", {"session": {"store": store}})
        for action in (["revoke", "--all"], ["list"]):
            result = await asyncio.to_thread(cli, "sessions", *action, "-c", str(path),
                                             cwd=tmp_path)
            assert result.returncode == 1 and expected in result.stderr, result.stderr
            assert result.stdout == ""
    down = write_proxy_toml(tmp_path / "down.toml", free_port(), "http://127.0.0.1:9",
                            "http://127.0.0.1:9", {"session": {
                                "store": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0"}})
    result = await asyncio.to_thread(cli, "sessions", "list", "-c", str(down), cwd=tmp_path)
    assert result.returncode == 1 and "unavailable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["revoke"], ["revoke", "--user", ALICE, "--all"],
                                  ["revoke", "--user", ""], ["list", "--all"]])
def test_revoke_needs_exactly_one_filter(tmp_path: Path, args: list[str]) -> None:
    result = cli("sessions", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
