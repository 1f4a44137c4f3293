"""Session administration's parts: who may call the admin listener (the peer and token
checks, with hostile inputs), the indexes that find a user's sessions (bounded: they expire
with their sessions), and rewrites that never resurrect a revoked session."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import make_mocked_request

from proxy.__main__ import main
from proxy.admin import Refused, check_caller, is_loopback_host, is_loopback_peer, token_matches
from proxy.config import Secret, SessionConfig
from proxy.config_load import load
from proxy.identity import Identity
from proxy.session.backend import Backend
from proxy.session.factory import build_store
from proxy.session.memory import MemoryBackend
from proxy.session.redis_store import RedisBackend
from proxy.session.server_store import ServerSideStore
from proxy.session.store import Session, Tokens
from tests.conftest import SECRET
from tests.support.proxy_toml import write_proxy_toml

TOKEN = secrets.token_urlsafe(32)


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_peers(peer: str) -> None:
    assert is_loopback_peer(peer)


@pytest.mark.parametrize("peer", [None, "", "10.0.0.5", "0.0.0.0", "::", "::ffff:10.0.0.1",
                                  "localhost", "127.0.0.1.evil.example", "127.0.0.1 ",
                                  "169.254.169.254", "fe80::1", "192.168.1.1", "2001:db8::1",
                                  "::ffff:0.0.0.0", "127.0.0.1/8", "[::1]"])
def test_other_peers_are_not_loopback(peer: str | None) -> None:
    assert not is_loopback_peer(peer)


def request_from(peer: str, headers: dict[str, str] | None = None) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default)
    return make_mocked_request("GET", "/admin/sessions", headers=headers, transport=transport)


@pytest.mark.parametrize("host", ["localhost", "localhost:9090", "127.0.0.1", "127.0.0.1:9090",
                                  "[::1]", "[::1]:9090", "[::ffff:127.0.0.1]:1", "LocalHost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io",
                                  "[::2]", "10.0.0.1:9090", "localhost:9090:1",
                                  "127.0.0.1@evil", "[::1", "[::1]x", "0.0.0.0"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize("peer", ["10.0.0.5", "::ffff:10.0.0.1", "192.168.1.1"])
def test_without_a_token_only_loopback_peers_pass(peer: str) -> None:
    check_caller(request_from("127.0.0.1"), "")
    with pytest.raises(Refused) as refused:
        # A forwarded header naming loopback is never believed: only the TCP peer counts.
        check_caller(request_from(peer, {"X-Forwarded-For": "127.0.0.1",
                                         "X-Real-IP": "127.0.0.1"}), "")
    assert refused.value.status == 403


def test_with_a_token_a_remote_peer_with_it_passes_and_loopback_without_it_does_not() -> None:
    check_caller(request_from("10.0.0.5", {"Authorization": f"Bearer {TOKEN}"}), TOKEN)
    with pytest.raises(Refused) as refused:
        check_caller(request_from("127.0.0.1"), TOKEN)
    assert refused.value.status == 401


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", TOKEN,
                                    f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer x",
                                    f"Bearer {TOKEN} {TOKEN}", f"Token {TOKEN}"])
def test_wrong_tokens(header: str | None) -> None:
    assert not token_matches(header, TOKEN)


def test_token_matches_and_no_configured_token_matches_nothing() -> None:
    assert token_matches(f"Bearer {TOKEN}", TOKEN) and token_matches(f"bearer {TOKEN}", TOKEN)
    assert not token_matches("Bearer ", "") and not token_matches("Bearer x", "")


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Backend]:
    prefix = f"azp-test-{secrets.token_hex(4)}:"
    made: Backend = (MemoryBackend(100) if request.param == "memory"
                     else RedisBackend(redis.Redis.from_url(redis_url), prefix=prefix))
    yield made
    await made.close()
    client = redis.Redis.from_url(redis_url)
    async for key in client.scan_iter(prefix + "*"):
        await client.delete(key)
    await client.aclose()


async def test_index_members_expire_one_by_one(backend: Backend) -> None:
    now = time.time()
    await backend.index_add("u:x", "gone", now + 0.2)
    await backend.index_add("u:x", "kept", now + 30)
    await backend.index_add("u:x", "also", now + 30)
    assert await backend.index_members("u:x") == ["also", "gone", "kept"]
    time.sleep(0.3)
    assert await backend.index_members("u:x") == ["also", "kept"]
    await backend.index_remove("u:x", "also", "never-there")
    assert await backend.index_members("u:x") == ["kept"]
    await backend.index_remove("u:x", "kept")
    assert await backend.index_members("u:x") == []


async def test_redis_index_expires_with_its_last_member(redis_url: str) -> None:
    prefix = f"azp-test-{secrets.token_hex(4)}:"
    client = redis.Redis.from_url(redis_url)
    backend = RedisBackend(redis.Redis.from_url(redis_url), prefix=prefix)
    try:
        now = time.time()
        await backend.index_add("all", "a", now + 20)
        await backend.index_add("all", "old", now - 5)  # already past: dropped at once
        await backend.index_add("all", "b", now + 10)
        assert 10_000 < await client.pttl(prefix + "all") <= 20_000  # the latest member's
        assert await client.zrange(prefix + "all", 0, -1) == [b"b", b"a"]  # "old" pruned
    finally:
        await backend.close()
        await client.delete(prefix + "all")
        await client.aclose()


def store(backend: Backend, idle_timeout: float = 0.0) -> ServerSideStore:
    config = SessionConfig(secret=Secret(SECRET), idle_timeout=idle_timeout)
    return ServerSideStore(config, backend, app="client")


ALICE = Identity(oid="A11CE", tid="t", preferred_username="Alice@Contoso.Example")
BOB = Identity(oid="b0b", tid="t", preferred_username="bob@contoso.example")


async def cookie_of(s: ServerSideStore, identity: Identity) -> dict[str, str]:
    tokens = Tokens("at", "rt", "it", time.time() + 3600)
    specs = await s.save(Session(identity, tokens=tokens), {})
    return {s.name: specs[-1].value}


async def test_a_set_member_is_removed_alone_and_the_last_one_takes_the_set(
        backend: Backend) -> None:
    for member in ("a", "b"):
        await backend.add_to_set("sid:x", member, 60.0)
    await backend.remove_from_set("sid:x", "a")
    await backend.remove_from_set("sid:x", "absent")
    assert await backend.pop_set("sid:x") == ["b"]
    await backend.add_to_set("sid:y", "a", 60.0)
    await backend.remove_from_set("sid:y", "a")
    assert await backend.pop_set("sid:y") == []


class RefreshLandsFirst:
    """A backend whose next write is preceded by another request's refresh (`land`): the
    interleaving of a request's sliding idle write with a refresh on another replica."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.land: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def set(self, key: str, value: bytes, ttl: float, **kwargs: Any) -> None:
        if (land := self.land) is not None:
            self.land = None
            await land()
        await self.inner.set(key, value, ttl, **kwargs)


async def test_an_idle_window_write_never_undoes_a_refresh_written_meanwhile(
        backend: Backend) -> None:
    racing = RefreshLandsFirst(backend)
    s = store(racing, idle_timeout=3600.0)
    session = await s.load(await cookie_of(s, ALICE))
    assert session is not None and session.tokens is not None
    await s._write(session, seen=time.time() - 120)  # last seen 2 minutes ago
    refreshed = Session(dataclasses.replace(ALICE, groups=()), session.id, session.created,
                        dataclasses.replace(session.tokens, access_token="at2",
                                            refresh_token="rt2"))
    racing.land = lambda: s.update(refreshed)
    assert await s.reload(session.id) is not None  # read before the refresh, written after
    assert racing.land is None  # (the idle write happened)
    now = await s.reload(session.id)
    assert now is not None and now.tokens is not None
    assert (now.tokens.access_token, now.tokens.refresh_token) == ("at2", "rt2")


async def test_a_rewrite_never_resurrects_a_revoked_session(backend: Backend) -> None:
    s = store(backend, idle_timeout=3600.0)
    cookie = await cookie_of(s, ALICE)
    session = await s.load(cookie)
    assert session is not None
    assert await s.revoke(user="alice@contoso.example") == 1
    await s.update(session)  # a refresh that was under way when the session was revoked
    assert await s.load(cookie) is None
    assert await s.reload(session.id) is None


async def test_sessions_are_found_by_user_oid_or_all_and_stale_members_pruned(
        backend: Backend) -> None:
    s = store(backend)
    alice = await cookie_of(s, ALICE)
    await cookie_of(s, BOB)
    assert len(await s.sessions()) == 2
    assert len(s._opened) == 0  # listing keeps nothing: the cache is the hot path's
    assert [i.user for i in await s.sessions(user="ALICE@contoso.example")] == [
        "Alice@Contoso.Example"]
    assert [i.user for i in await s.sessions(oid="a11ce")] == ["Alice@Contoso.Example"]
    assert len(await s.sessions()) == 2
    await s.clear(alice)  # signed out: the record goes, the index member is pruned when listed
    assert [i.user for i in await s.sessions()] == ["bob@contoso.example"]
    assert await backend.index_members("client/azp_session:all") != []
    assert len(await backend.index_members("client/azp_session:all")) == 1
    assert await s.revoke(oid="B0B") == 1
    assert await s.sessions() == [] and await s.revoke(everyone=True) == 0
    with pytest.raises(ValueError):
        await s.revoke()  # no filter is no revocation, never "everyone"


def test_admin_token_is_a_secret_from_env_and_a_short_one_is_refused() -> None:
    from proxy.config_load import from_dict, redacted
    from tests.test_config import base_dict, dict_problems

    config = from_dict(base_dict(), {"PROXY_SERVER_ADMIN_TOKEN": TOKEN})
    assert config.server.admin_token.reveal() == TOKEN
    assert TOKEN not in repr(config) and redacted(config)["server"]["admin_token"] == "********"
    problems = dict_problems(base_dict(), {"PROXY_SERVER_ADMIN_TOKEN": "short-token"})
    assert [p for p in problems if p.startswith("server.admin_token: too short")], problems
    assert "short-token" not in " ".join(problems)


def test_cli_in_process_lists_and_revokes(tmp_path: Path, redis_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The `sessions` command's own process is tested in tests/flows/test_session_admin.py;
    here the same code runs in this process, seeded through the store itself."""
    extra = {"session": {"store": "redis", "redis_url": redis_url,
                         "cookie_name": "azp_" + secrets.token_hex(4)}}
    path = write_proxy_toml(tmp_path / "proxy.toml", 4180, "http://127.0.0.1:9",
                            "http://127.0.0.1:9", extra)
    config = load(path)

    async def seed() -> None:
        s = build_store(config.session, app=config.azure.client_id)
        assert isinstance(s, ServerSideStore)
        for identity in (ALICE, ALICE, BOB):
            await cookie_of(s, identity)
        await s.close()

    asyncio.run(seed())
    assert main(["sessions", "list", "-c", str(path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ID", "PREFIX", "USER", "OID", "TENANT", "CREATED", "LAST",
                                "SEEN", "EXPIRES"]
    assert len(table) == 5 and table[-1] == "3 sessions"
    assert main(["sessions", "revoke", "-c", str(path), "--oid", "a11ce"]) == 0
    assert capsys.readouterr().out == "revoked 2 sessions of oid a11ce\n"
    assert main(["sessions", "list", "-c", str(path), "--json"]) == 0
    assert [s["user"] for s in json.loads(capsys.readouterr().out)["sessions"]] == [BOB.user]
    assert main(["sessions", "revoke", "-c", str(path), "--all"]) == 0
    assert capsys.readouterr().out == "revoked 1 session\n"
