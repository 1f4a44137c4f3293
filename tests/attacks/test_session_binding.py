"""A session is honoured only under the rules that would admit its sign-in now (issue 17.1):
a reload that narrows `allowed_tenants` or changes `client_id`, a restart under new rules,
and a second proxy (another client_id) sharing the Redis and the secret all refuse it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy.app import build_app, reload
from proxy.config_load import from_dict
from proxy.mock_entra import (
    DEFAULT_CLIENT_ID,
    DEFAULT_TENANT_ID,
    OTHER_TENANT_ID,
    MockClient,
    MockEntra,
)
from proxy.mock_entra.users import DEFAULT_REDIRECT_URIS
from proxy.session.server_store import ID_SALT
from proxy.session.signing import app_salt, serializer
from tests.attacks.conftest import sign_in, store_config
from tests.attacks.harness import Upstream, tally
from tests.conftest import (
    ALICE,
    SECRET,
    Browsers,
    Stack,
    base_config,
    deep_merge,
    free_port,
    wait_ready,
)
from tests.support.proxy_toml import write_proxy_toml

FAMILY = "session-binding"
CAROL = "carol@fabrikam.example"  # OTHER_TENANT_ID
OTHER_CLIENT = "0b1c2d3e-4f50-4a61-8b72-c3d4e5f60718"
OTHER_SECRET = "another-client-secret-for-the-second-app"
# Everything a session opens: the app (gateway), forward auth, userinfo, /.auth/me.
PROBES = ["/app/x", "/oauth2/auth", "/oauth2/userinfo", "/.auth/me"]


def register_other_client(mock: MockEntra) -> None:
    mock.clients[OTHER_CLIENT] = MockClient(OTHER_CLIENT, OTHER_SECRET,
                                            list(DEFAULT_REDIRECT_URIS))


def cookie_header(browser: aiohttp.ClientSession, url: str) -> str:
    """The browser's cookies for `url`, replayed by hand: a refusal deletes them from the
    jar, and every probe must still carry the session."""
    jar = browser.cookie_jar.filter_cookies(URL(url))
    return "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())


async def probe(url: str, cookie: str, upstream: Upstream) -> list[int]:
    """Statuses of every probe with `cookie`; each is tallied (reached: the upstream saw
    the request, or the browser got the identity or a 2xx answer)."""
    statuses = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        for path in PROBES:
            before = len(upstream.seen)
            async with client.get(url + path, headers={"Cookie": cookie},
                                  allow_redirects=False) as resp:
                body = await resp.text()
            reached = len(upstream.seen) > before or resp.status < 300 or "@" in body
            tally(FAMILY, refused=resp.status in (302, 401, 403), crashed=resp.status >= 500,
                  reached=reached)
            statuses.append(resp.status)
    return statuses


@pytest.fixture
async def served() -> AsyncIterator[list[TestServer]]:
    servers: list[TestServer] = []
    yield servers
    for server in servers:
        await server.close()


async def serve(raw: dict[str, Any], servers: list[TestServer]) -> tuple[Any, str]:
    app = build_app(from_dict(raw))
    port = int(raw["server"]["listen"].rsplit(":", 1)[1])
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    servers.append(server)
    return app, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("store", ["cookie", "memory", "redis"])
async def test_a_reload_that_narrows_the_rules_ends_old_sessions(
        store: str, mock_server: tuple[MockEntra, str], upstream: Upstream, redis_url: str,
        browsers: Browsers, served: list[TestServer]) -> None:
    mock, idp = mock_server
    register_other_client(mock)
    port = free_port()
    raw = deep_merge(base_config(port, idp, upstream.url), {
        "azure": {"tenant_id": "common", "allowed_tenants": [DEFAULT_TENANT_ID, OTHER_TENANT_ID]},
        "identity": {"easy_auth": True}, **store_config(store, redis_url)})
    app, url = await serve(raw, served)
    stack = Stack(mock, from_dict(raw), url, idp, upstream.url, browsers())
    # Two sessions of Carol's: a refusal deletes a server-side record, so the reload and
    # the restart each get their own.
    carol, carol_too = [cookie_header(await sign_in(stack, CAROL, browsers()), url)
                        for _ in range(2)]
    alice = cookie_header(await sign_in(stack, ALICE, browsers()), url)
    async with aiohttp.ClientSession() as client:  # all sessions open everything before
        for cookie in (carol, carol_too, alice):
            for path in PROBES:
                async with client.get(url + path, headers={"Cookie": cookie}) as resp:
                    assert resp.status in (200, 202), (path, resp.status)

    narrowed = deep_merge(raw, {"azure": {"allowed_tenants": [DEFAULT_TENANT_ID]}})
    assert await reload(app, lambda: from_dict(narrowed))
    seen = len(upstream.seen)
    # 403: what a fresh sign-in from Carol's tenant gets, not a sign-in loop; a server-side
    # record is deleted by the first refusal, so later probes find no session (401).
    refused = await probe(url, carol, upstream)
    assert refused[0] == 403 and set(refused) <= {401, 403}, refused
    if store == "cookie":
        assert refused == [403] * len(PROBES)
    assert len(upstream.seen) == seen
    async with aiohttp.ClientSession() as client:  # Alice's tenant is still allowed
        async with client.get(url + "/app/y", headers={"Cookie": alice}) as resp:
            assert resp.status == 200

    # A restart (a new process state) under the narrowed rules, same secret and store.
    _, restarted = await serve(deep_merge(narrowed, {"server": {
        "listen": f"127.0.0.1:{(other := free_port())}",
        "public_url": f"http://127.0.0.1:{other}"}}), served)
    if store != "memory":  # a memory store's sessions die with the process anyway
        assert (await probe(restarted, carol_too, upstream))[0] == 403

    moved = deep_merge(narrowed, {"azure": {"client_id": OTHER_CLIENT,
                                            "client_secret": OTHER_SECRET}})
    assert await reload(app, lambda: from_dict(moved))
    assert await probe(url, alice, upstream) == [401] * len(PROBES)  # sign in again
    assert len(upstream.seen) == seen + 1  # only Alice's request before the client change
    again = await sign_in(stack, ALICE, browsers())  # the new registration signs in fine
    async with again.get(url + "/app/z") as resp:
        assert resp.status == 200


async def test_two_proxies_sharing_redis_never_share_sessions(
        tmp_path: Path, mock_server: tuple[MockEntra, str], upstream: Upstream,
        redis_url: str, browsers: Browsers) -> None:
    """Two processes, one Redis and one secret, two app registrations."""
    mock, idp = mock_server
    register_other_client(mock)
    store = {"session": {"store": "redis", "redis_url": redis_url}, "identity": {"easy_auth": True}}
    ports = free_port(), free_port()
    configs = [
        write_proxy_toml(tmp_path / "a.toml", ports[0], idp, upstream.url, store),
        write_proxy_toml(tmp_path / "b.toml", ports[1], idp, upstream.url, deep_merge(store, {
            "azure": {"client_id": OTHER_CLIENT, "client_secret": OTHER_SECRET}})),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    procs = [subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(c)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
             for c in configs]
    first, second = (f"http://127.0.0.1:{p}" for p in ports)
    try:
        for url in (first, second):
            await wait_ready(url)
        config = from_dict(base_config(ports[0], idp, upstream.url))
        alice = await sign_in(Stack(mock, config, first, idp, upstream.url, browsers()),
                              ALICE, browsers())
        cookie = cookie_header(alice, first)
        value = cookie.split("azp_session=", 1)[1].split(";", 1)[0]
        session_id = serializer([SECRET], app_salt(ID_SALT, DEFAULT_CLIENT_ID)).loads(value)
        # The same record, its id signed as the second proxy signs ids (it has the secret).
        resigned = serializer([SECRET], app_salt(ID_SALT, OTHER_CLIENT)).dumps(session_id)
        seen = len(upstream.seen)
        for forged in (cookie, f"azp_session={resigned}"):
            assert await probe(second, forged, upstream) == [401] * len(PROBES)
        assert len(upstream.seen) == seen
        async with aiohttp.ClientSession() as client:  # the first proxy still honours it
            async with client.get(first + "/oauth2/userinfo",
                                  headers={"Cookie": cookie}) as resp:
                assert resp.status == 200
        bob = await sign_in(Stack(mock, config, second, idp, upstream.url, browsers()),
                            ALICE, browsers())
        assert bob.cookie_jar  # the second proxy signs in on its own registration
        client_redis = redis.Redis.from_url(redis_url)
        try:
            keys = {k.decode() async for k in client_redis.scan_iter("azp:*/azp_session:s:*")}
        finally:
            await client_redis.aclose()
        assert f"azp:{DEFAULT_CLIENT_ID}/azp_session:s:{session_id}" in keys
        assert any(k.startswith(f"azp:{OTHER_CLIENT}/azp_session:s:") for k in keys)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


@pytest.mark.parametrize("store", ["cookie", "redis"])
async def test_a_reload_that_stops_trusting_unverified_email_ends_sessions_holding_one(
        store: str, mock_server: tuple[MockEntra, str], upstream: Upstream, redis_url: str,
        browsers: Browsers, served: list[TestServer]) -> None:
    mock, idp = mock_server
    for client in mock.clients.values():
        client.optional_claims = ()  # no xms_edov: Entra does not vouch for the email
    raw = deep_merge(base_config(free_port(), idp, upstream.url), {
        "identity": {"trust_unverified_email": True, "easy_auth": True},
        **store_config(store, redis_url)})
    app, url = await serve(raw, served)
    stack = Stack(mock, from_dict(raw), url, idp, upstream.url, browsers())
    alice = await sign_in(stack, ALICE, browsers())
    cookie = cookie_header(alice, url)
    async with alice.get(url + "/x") as resp:
        assert resp.status == 200
    assert upstream.seen[-1].values("X-Forwarded-Email") == [ALICE]
    seen = len(upstream.seen)
    untrusted = deep_merge(raw, {"identity": {"trust_unverified_email": False}})
    assert await reload(app, lambda: from_dict(untrusted))
    assert await probe(url, cookie, upstream) == [401] * len(PROBES)
    assert len(upstream.seen) == seen
    again = await sign_in(stack, ALICE, browsers())  # a new sign-in drops the email
    async with again.get(url + "/x") as resp:
        assert resp.status == 200
    assert upstream.seen[-1].values("X-Forwarded-Email") == []
