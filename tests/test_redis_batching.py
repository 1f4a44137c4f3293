"""The Redis store's batched reads and the server-side store's decode caches, over real Redis.

proxy/session/redis_store.py sends waiting reads as one MGET (one future per caller), with
at most MAX_READS MGETs out at once; proxy/session/server_store.py caches verified cookie
ids (by digest, bounded by the cookie's own max_age) and the last record it decrypted per
session (reused only while Redis returns the same bytes). Nothing here mocks redis-py: the
counts come from the server's own INFO commandstats and SLOWLOG, the outages from stopping
or freezing a throwaway redis-server (tests/redis_servers.py).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from proxy.config import Config
from proxy.config_load import from_dict
from proxy.errors import StoreUnavailable
from proxy.identity import Identity
from proxy.session.factory import build_store
from proxy.session.redis_store import CALL_BUDGET, MAX_READS
from proxy.session.server_store import ID_SALT, ServerSideStore
from proxy.session.signing import SESSION_SALT, app_salt, serializer
from proxy.session.store import Session, Tokens
from tests.conftest import base_config, deep_merge
from tests.redis_servers import (
    PERSISTENT,
    RedisCluster,
    RedisServer,
    StartRedis,
    frozen,
    parse_info,
)

COOKIE = "azp_session"
NOWHERE = "http://127.0.0.1:9"  # IdP and upstream: never contacted, the stores need neither
BUDGET_SLACK = 3.0  # seconds on top of CALL_BUDGET: another process may be benchmarking
SETTLE = CALL_BUDGET + BUDGET_SLACK  # longest any load may keep its caller waiting
LOST = ("Future exception was never retrieved", "Task exception was never retrieved")

Jar = dict[str, str]
Build = Callable[..., ServerSideStore]


# --------------------------------------------------------------------------- helpers


def config_for(store: str, redis_url: str = "", **session: Any) -> Config:
    extra: dict[str, Any] = {"store": store, **session}
    if redis_url:
        extra["redis_url"] = redis_url
    return from_dict(deep_merge(base_config(4180, NOWHERE, NOWHERE), {"session": extra}), {})


def person(n: int, **claims: Any) -> Identity:
    return Identity(oid=f"oid-{n}", tid="tid-1", preferred_username=f"user{n}@contoso.example",
                    **claims)


def tokens(tag: str) -> Tokens:
    return Tokens(f"at-{tag}", f"rt-{tag}", f"it-{tag}", time.time() + 3600)


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def command_calls(server: RedisServer) -> Counter[str]:
    """Calls per command so far, from INFO commandstats (cmdstat_mget:calls=3,... -> mget: 3)."""
    out: Counter[str] = Counter()
    for key, value in parse_info(server.command("INFO", "commandstats")).items():
        if key.startswith("cmdstat_"):
            fields = dict(part.split("=", 1) for part in value.split(","))
            out[key.removeprefix("cmdstat_")] = int(fields["calls"])
    return out


def cluster_calls(cluster: RedisCluster) -> Counter[str]:
    total: Counter[str] = Counter()
    for node in cluster.nodes:
        total.update(command_calls(node))
    return total


def record_every_command(server: RedisServer) -> None:
    """SLOWLOG with a 0 µs threshold: every command, with its arguments, from now on."""
    server.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    server.command("CONFIG", "SET", "slowlog-max-len", "10000")
    server.command("SLOWLOG", "RESET")


def logged_commands(server: RedisServer, name: str) -> list[list[str]]:
    """Argument lists of the logged `name` commands (oldest first), then a fresh log."""
    entries = server.command("SLOWLOG", "GET", "-1")
    server.command("SLOWLOG", "RESET")
    assert isinstance(entries, list)
    out: list[list[str]] = []
    for entry in reversed(entries):
        assert isinstance(entry, list) and isinstance(entry[3], list)
        args = [str(arg) for arg in entry[3]]
        if args[0].lower() == name:
            out.append(args)
    return out


async def sign_in(store: ServerSideStore, identity: Identity,
                  tag: str = "1") -> tuple[Jar, Session]:
    """A fresh session as a login makes it: the cookie jar, and the session as loaded."""
    specs = await store.save(Session(identity, tokens=tokens(tag)), {})
    jar = {spec.name: spec.value for spec in specs if spec.max_age is not None}
    loaded = await store.load(jar)
    assert loaded is not None and loaded.identity == identity
    return jar, loaded


async def signed_in(store: ServerSideStore, count: int) -> tuple[list[Identity], list[Jar]]:
    """`count` people, each signed in: their identities and cookie jars, in order."""
    people = [person(n) for n in range(count)]
    return people, [(await sign_in(store, p))[0] for p in people]


def identities(loaded: Sequence[Session | BaseException | None]) -> list[Identity | None]:
    out: list[Identity | None] = []
    for result in loaded:
        assert not isinstance(result, BaseException), result
        out.append(result.identity if result is not None else None)
    return out


def start_loads(store: ServerSideStore, jars: Sequence[Jar]) -> list[asyncio.Task[Session | None]]:
    """One task per cookie jar, all created in this turn of the event loop."""
    return [asyncio.create_task(store.load(jar)) for jar in jars]


async def settle(tasks: list[asyncio.Task[Session | None]],
                 within: float = SETTLE) -> list[Session | None | BaseException]:
    """Every task's result or exception; a caller still waiting after `within` s fails."""
    _, waiting = await asyncio.wait(tasks, timeout=within)
    for task in waiting:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert not waiting, (f"{len(waiting)} of {len(tasks)} loads still waiting after "
                         f"{within:.0f} s (the Redis call budget is {CALL_BUDGET:.0f} s)")
    return results


async def load_all(store: ServerSideStore, jars: Sequence[Jar]) -> list[Identity | None]:
    """Load every jar concurrently (one batch); their identities, None for no session."""
    return identities(await settle(start_loads(store, jars)))


def assert_nothing_lost(caplog: pytest.LogCaptureFixture) -> None:
    """No future or task died with an exception nobody looked at (asyncio logs those at gc)."""
    gc.collect()
    lost = [r.getMessage() for r in caplog.records if any(m in r.getMessage() for m in LOST)]
    assert not lost, lost



# --------------------------------------------------------------------------- fixtures


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def no_lost_exceptions() -> Iterator[None]:
    """Every test, teardown included: asyncio never reports an exception nobody retrieved."""
    handler = _Collect()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield
        gc.collect()
        lost = [m for m in handler.messages if any(text in m for text in LOST)]
        assert not lost, lost
    finally:
        logger.removeHandler(handler)


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """build_store(config.session) for a config made by config_load; closed after the test."""
    made: list[ServerSideStore] = []

    def make(store: str, redis_url: str = "", **session: Any) -> ServerSideStore:
        built = build_store(config_for(store, redis_url, **session).session)
        assert isinstance(built, ServerSideStore)
        made.append(built)
        return built

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def shared_redis(redis_url: str) -> AsyncIterator[tuple[str, list[str]]]:
    """The suite's shared Redis (PROXY_TEST_REDIS_URL): the URL and a list of session ids to
    remove afterwards; ids are random, so nothing else in that db is touched."""
    created: list[str] = []
    yield redis_url, created
    client = redis.Redis.from_url(redis_url)
    try:
        for session_id in created:
            await client.delete(f"azp:/azp_session:s:{session_id}",
                                f"azp:lock:/azp_session:refresh:{session_id}")
    finally:
        await client.aclose()



@pytest.fixture
def persistent_cluster(start_redis: StartRedis, tmp_path: Path) -> RedisCluster:
    """A throwaway 3-master Cluster that keeps its data across stop/start (AOF)."""
    return start_redis(RedisCluster(tmp_path / "cluster", extra_config=PERSISTENT))


# --------------------------------------------------------------------------- batching


async def test_fifty_concurrent_loads_of_ten_sessions_share_one_mget(
        build: Build, redis_server: RedisServer) -> None:
    store = build("redis", redis_server.url)
    people = [person(n) for n in range(10)]
    signed_in = [await sign_in(store, p) for p in people]
    keys = sorted(f"azp:/azp_session:s:{session.id}" for _, session in signed_in)
    record_every_command(redis_server)
    for _ in range(3):
        before = command_calls(redis_server)
        loaded = await settle(start_loads(store, [signed_in[i % 10][0] for i in range(50)]))
        delta = command_calls(redis_server) - before
        assert identities(loaded) == [people[i % 10] for i in range(50)]
        assert [s.id if isinstance(s, Session) else s for s in loaded] == [
            signed_in[i % 10][1].id for i in range(50)]
        assert delta["get"] == 0, delta
        assert 1 <= delta["mget"] <= 2, delta
        # And the 50 reads asked for each of the 10 keys once: callers of one key share it.
        mgets = logged_commands(redis_server, "mget")
        assert sorted(key for args in mgets for key in args[1:]) == keys, mgets


async def test_reads_of_separate_turns_are_separate_mgets(
        build: Build, redis_server: RedisServer) -> None:
    """Batching only gathers what is asked for together: a lone read is not held back."""
    store = build("redis", redis_server.url)
    jars = [(await sign_in(store, person(n)))[0] for n in range(3)]
    before = command_calls(redis_server)
    for n, jar in enumerate(jars):
        assert await load_all(store, [jar]) == [person(n)]
    delta = command_calls(redis_server) - before
    assert delta["mget"] == 3 and delta["get"] == 0, delta


async def test_cluster_batch_reads_through_mget_nonatomic(
        build: Build, redis_cluster: RedisCluster) -> None:
    store = build("redis", redis_cluster.url, redis_cluster=True)
    people, jars = await signed_in(store, 10)
    before = cluster_calls(redis_cluster)
    loaded = await load_all(store, [jars[i % 10] for i in range(40)])
    delta = cluster_calls(redis_cluster) - before
    assert loaded == [people[i % 10] for i in range(40)]
    # One MGET per hash slot at most (10 keys: at most 10 slots), never a GET per caller.
    assert delta["get"] == 0 and 1 <= delta["mget"] <= 10, delta


async def next_turns(n: int = 3) -> None:
    """Let the loop run a few turns: a flushed batch's MGET is handed to redis-py."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_reads_queued_behind_busy_mgets_go_out_together(
        build: Build, redis_server: RedisServer) -> None:
    """At most MAX_READS MGETs are out at once: reads asked for meanwhile, over several
    turns of the loop, wait and then share one MGET (the batch grows with the load)."""
    assert MAX_READS == 2
    store = build("redis", redis_server.url)
    people = [person(n) for n in range(6)]
    signed_in = [await sign_in(store, p) for p in people]
    keys = [f"azp:/azp_session:s:{session.id}" for _, session in signed_in]
    jars = [jar for jar, _ in signed_in]
    record_every_command(redis_server)
    with frozen(redis_server):  # the first two MGETs stay out until Redis resumes
        tasks = start_loads(store, [jars[0]])
        await asyncio.sleep(0.05)
        tasks += start_loads(store, [jars[1]])
        await asyncio.sleep(0.05)
        for n in (2, 3, 4, 5):  # four more turns: both slots are busy, so these queue
            tasks += start_loads(store, [jars[n]])
            await next_turns()
        await asyncio.sleep(0.05)
    assert identities(await settle(tasks)) == people
    # (In any order: the second MGET's connection may still be in its handshake when the
    # first answer frees a slot for the queued batch.)
    mgets = sorted(sorted(args[1:]) for args in logged_commands(redis_server, "mget"))
    assert mgets == sorted([[keys[0]], [keys[1]], sorted(keys[2:])]), mgets


async def test_reads_queued_behind_a_frozen_redis_fail_within_one_budget(
        build: Build, persistent_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """A read that waited for a slot does not get a fresh budget when it goes out: every
    read fails within CALL_BUDGET of being asked for, not two budgets back to back."""
    caplog.set_level(logging.DEBUG, logger="asyncio")
    store = build("redis", persistent_redis.url)
    people, jars = await signed_in(store, 4)
    with frozen(persistent_redis):
        started = time.monotonic()
        tasks: list[asyncio.Task[Session | None]] = []
        for jar in jars:  # two go out and hang, two queue behind them
            tasks += start_loads(store, [jar])
            await asyncio.sleep(0.05)
        results = await settle(tasks, within=CALL_BUDGET + BUDGET_SLACK)
        elapsed = time.monotonic() - started
    assert all(isinstance(e, StoreUnavailable) for e in results), results
    assert elapsed < CALL_BUDGET + BUDGET_SLACK, elapsed
    assert await load_all(store, jars) == people  # resumed: the queue drained, all is well
    assert_nothing_lost(caplog)


async def test_close_fails_queued_reads_and_leaves_no_connection(
        build: Build, persistent_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """Closing the store (shutdown, or a reload retiring it) while reads are out and queued:
    the queued ones fail at once, those out finish, later reads are refused, and no
    connection is left open (nor opened afterwards by a read that was still waiting)."""
    caplog.set_level(logging.DEBUG, logger="asyncio")
    store = build("redis", persistent_redis.url)
    people, jars = await signed_in(store, 4)
    with frozen(persistent_redis):
        tasks: list[asyncio.Task[Session | None]] = []
        for jar in jars:  # two MGETs go out, two reads queue
            tasks += start_loads(store, [jar])
            await asyncio.sleep(0.05)
        closing = asyncio.create_task(store.close())
        await asyncio.sleep(0.05)
    await asyncio.wait_for(closing, CALL_BUDGET)
    results = await settle(tasks)
    assert identities(results[:2]) == people[:2]  # out: answered once Redis resumed
    assert all(isinstance(e, StoreUnavailable) for e in results[2:]), results
    with pytest.raises(StoreUnavailable):
        await store.load(jars[0])
    await asyncio.sleep(0.1)
    clients = parse_info(persistent_redis.command("INFO", "clients"))
    assert clients["connected_clients"] == "1", clients  # only this INFO's own connection
    assert_nothing_lost(caplog)


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("when", ["queued", "in_flight"])
async def test_a_cancelled_caller_cancels_only_its_own_read(
        build: Build, redis_server: RedisServer, caplog: pytest.LogCaptureFixture,
        when: str) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    store = build("redis", redis_server.url)
    people, jars = await signed_in(store, 5)
    before = command_calls(redis_server)
    started = time.monotonic()
    if when == "in_flight":  # Redis holds the MGET for 1 s: cancel while it is on the wire
        assert redis_server.command("CLIENT", "PAUSE", "1000", "ALL") == "OK"
    tasks = start_loads(store, [jars[i % 5] for i in range(10)])
    # Keys 3 and 4 keep a caller each (tasks 8 and 4); key 2 loses both of its callers.
    victims = [tasks[3], tasks[9], tasks[2], tasks[7]]
    if when == "queued":
        await asyncio.sleep(0)  # every load has asked for its read; the MGET is not sent yet
        assert (command_calls(redis_server) - before)["mget"] == 0
    else:
        await asyncio.sleep(0.3)
    assert not any(t.done() for t in tasks)
    for victim in victims:
        victim.cancel()
    results = await settle(tasks)
    for i, result in enumerate(results):
        if tasks[i] in victims:
            assert tasks[i].cancelled() and isinstance(result, asyncio.CancelledError)
        else:
            assert isinstance(result, Session) and result.identity == people[i % 5], result
    if when == "in_flight":
        assert time.monotonic() - started >= 0.8  # the others did wait out the pause
    assert (command_calls(redis_server) - before)["mget"] == 1  # one batch for all ten
    # The store carries on: the cancelled callers' sessions load, with nothing left behind.
    assert await load_all(store, [jars[2], jars[3], jars[4]]) == people[2:5]
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert_nothing_lost(caplog)


async def test_every_caller_of_a_batch_cancelled_leaves_nothing_behind(
        build: Build, redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    store = build("redis", redis_server.url)
    jar, _ = await sign_in(store, person(1))
    tasks = start_loads(store, [jar] * 5)
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await settle(tasks)
    assert all(t.cancelled() for t in tasks)
    deadline = time.monotonic() + 5  # the MGET itself still runs to its end, then is gone
    while asyncio.all_tasks() != {asyncio.current_task()}:
        assert time.monotonic() < deadline, asyncio.all_tasks()
        await asyncio.sleep(0.01)
    assert await load_all(store, [jar]) == [person(1)]
    assert_nothing_lost(caplog)


# --------------------------------------------------------------------------- failures


async def test_redis_down_fails_each_waiter_on_its_own_then_recovers(
        build: Build, persistent_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    store = build("redis", persistent_redis.url)
    people, jars = await signed_in(store, 10)
    await asyncio.to_thread(persistent_redis.stop)

    started = time.monotonic()
    tasks = start_loads(store, [jars[i % 10] for i in range(30)])
    await asyncio.sleep(0)
    tasks[7].cancel()  # a caller gone before the failure: it must not get (or lose) one
    results = await settle(tasks)
    elapsed = time.monotonic() - started

    assert isinstance(results[7], asyncio.CancelledError)
    errors = [r for i, r in enumerate(results) if i != 7]
    assert all(isinstance(e, StoreUnavailable) for e in errors), errors
    assert len({id(e) for e in errors}) == len(errors)  # each waiter its own exception
    assert all("Redis" in str(e) for e in errors)
    assert elapsed < CALL_BUDGET + BUDGET_SLACK, elapsed
    with pytest.raises(StoreUnavailable):  # and a lone read, too
        await store.load(jars[0])

    await asyncio.to_thread(persistent_redis.start)
    assert await load_all(store, [jars[i % 10] for i in range(30)]) == [
        people[i % 10] for i in range(30)]
    assert_nothing_lost(caplog)


async def test_frozen_redis_fails_the_batch_within_the_budget_and_no_reply_goes_astray(
        build: Build, persistent_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    store = build("redis", persistent_redis.url)
    people, jars = await signed_in(store, 10)
    with frozen(persistent_redis):
        started = time.monotonic()
        results = await settle(start_loads(store, [jars[i % 10] for i in range(20)]))
        elapsed = time.monotonic() - started
    assert all(isinstance(e, StoreUnavailable) for e in results), results
    assert len({id(e) for e in results}) == len(results)
    assert elapsed < CALL_BUDGET + BUDGET_SLACK, elapsed
    # Redis now answers what it was sent while frozen. None of those late replies may be
    # taken for a later read: each subset below must get exactly its own sessions.
    for subset in ([0, 1, 2], [9, 8, 7, 6, 5, 4, 3], [5], list(range(10))):
        assert await load_all(store, [jars[i] for i in subset]) == [people[i] for i in subset]
    assert_nothing_lost(caplog)


async def test_cluster_down_fails_each_waiter_within_the_budget_then_recovers(
        build: Build, persistent_cluster: RedisCluster,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncio")
    store = build("redis", persistent_cluster.url, redis_cluster=True)
    people, jars = await signed_in(store, 10)
    await asyncio.to_thread(persistent_cluster.stop)

    errors = await settle(start_loads(store, [jars[i % 10] for i in range(20)]))
    assert all(isinstance(e, StoreUnavailable) for e in errors), errors
    assert len({id(e) for e in errors}) == len(errors)

    await asyncio.to_thread(persistent_cluster.start)
    assert await load_all(store, jars) == people
    assert_nothing_lost(caplog)


# --------------------------------------------------------------------------- decode cache


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_rewrite_elsewhere_is_seen_by_the_very_next_load(
        build: Build, shared_redis: tuple[str, list[str]], kind: str) -> None:
    url, created = shared_redis
    reader = build(kind, url)
    # Redis: a second instance (another replica) rewrites. Memory lives in one process: there
    # "elsewhere" is another request through the same store (a token refresh).
    writer = build(kind, url) if kind == "redis" else reader
    jar, first = await sign_in(reader, person(1), tag="v1")
    created.append(first.id)
    assert await reader.load(jar) is first  # unchanged bytes: served by the decode cache

    promoted = person(1, roles=("Admin",), groups=("g-new",))
    await writer.update(first.with_tokens(tokens("v2"), promoted))
    seen = await reader.load(jar)
    assert seen is not None and seen.identity == promoted and seen.tokens is not None
    assert seen.tokens.refresh_token == "rt-v2" and (seen.id, seen.created) == (first.id,
                                                                               first.created)
    # Back to the original identity (only the tokens differ): still a different record.
    await writer.update(first.with_tokens(tokens("v3"), first.identity))
    seen = await reader.load(jar)
    assert seen is not None and seen.identity == first.identity and seen.tokens is not None
    assert seen.tokens.access_token == "at-v3"
    assert (await reader.reload(first.id)) == seen

    # Many readers in one batch right after a rewrite: all of them see it.
    await writer.update(first.with_tokens(tokens("v4"), promoted))
    batch = await settle(start_loads(reader, [jar] * 20))
    assert {s.tokens.id_token if isinstance(s, Session) and s.tokens else s
            for s in batch} == {"it-v4"}

    await writer.clear_id(first.id)
    assert await reader.load(jar) is None
    assert await reader.reload(first.id) is None


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_session_ended_elsewhere_is_gone_at_once(
        build: Build, shared_redis: tuple[str, list[str]], kind: str) -> None:
    url, created = shared_redis
    reader = build(kind, url)
    writer = build(kind, url) if kind == "redis" else reader
    entra_sid = secrets.token_hex(8)
    sessions = [await sign_in(reader, person(n, sid=entra_sid if n == 2 else ""))
                for n in range(3)]
    created += [s.id for _, s in sessions]
    for jar, session in sessions:  # twice each: the second load comes from the decode cache
        for _ in range(2):
            assert await reader.load(jar) == session

    await writer.clear_id(sessions[0][1].id)  # an admin's revocation
    await writer.clear(sessions[1][0])  # sign-out through another replica
    assert await writer.end_sid(entra_sid) == 1  # Entra's front-channel logout
    assert await load_all(reader, [jar for jar, _ in sessions]) == [None, None, None]


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


TAMPERS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "nonce byte": lambda own, other: _flip(own, 0),
    "ciphertext byte": lambda own, other: _flip(own, len(own) // 2),
    "tag byte": lambda own, other: _flip(own, len(own) - 1),
    "truncated": lambda own, other: own[:-1],
    "another session's record": lambda own, other: other,
    "empty": lambda own, other: b"",
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
async def test_a_tampered_record_is_refused_right_after_a_cached_load(
        build: Build, shared_redis: tuple[str, list[str]], tamper: str) -> None:
    url, created = shared_redis
    store = build("redis", url)
    jar, session = await sign_in(store, person(1))
    _, other = await sign_in(store, person(2))
    created += [session.id, other.id]
    assert await store.load(jar) is session  # unchanged bytes: served by the decode cache
    raw = redis.Redis.from_url(url)
    try:
        key = f"azp:/azp_session:s:{session.id}"
        original = await raw.get(key)
        other_record = await raw.get(f"azp:/azp_session:s:{other.id}")
        assert isinstance(original, bytes) and isinstance(other_record, bytes)
        assert await raw.set(key, TAMPERS[tamper](original, other_record), keepttl=True)
        assert await store.load(jar) is None
        assert await store.load(jar) is None  # a refused record is not remembered as good
        assert await load_all(store, [jar] * 5) == [None] * 5
        # The genuine record put back loads again: the refusal came from the bytes alone.
        assert await raw.set(key, original, keepttl=True)
        assert await store.load(jar) == session
    finally:
        await raw.aclose()


# --------------------------------------------------------------------------- verified ids


async def test_a_cached_cookie_is_refused_once_its_max_age_has_passed(
        build: Build, redis_server: RedisServer) -> None:
    store = build("redis", redis_server.url, max_age="2s")
    jar, session = await sign_in(store, person(1))
    signed_at = time.time()
    assert await store.load(jar) == session  # verified and cached (the cache lives 60 s)
    assert digest(jar[COOKIE]) in store._verified
    await asyncio.sleep(max(0.0, signed_at + 2.2 - time.time()))
    assert digest(jar[COOKIE]) in store._verified  # still cached: the check is the expiry
    before = command_calls(redis_server)
    assert await store.load(jar) is None
    assert store._session_id(jar) is None
    # Refused at the cookie, before any read: not merely because the record has expired.
    assert (command_calls(redis_server) - before)["mget"] == 0


async def test_forged_cookies_are_refused_and_never_cached(
        build: Build, redis_server: RedisServer) -> None:
    config = config_for("redis", redis_server.url)
    keys = config.session.signing_keys
    store = build("redis", redis_server.url)
    stranger = build("redis", redis_server.url, secret=secrets.token_urlsafe(32))
    jar, session = await sign_in(store, person(1))
    foreign_jar, _ = await sign_in(stranger, person(9))
    value = jar[COOKIE]
    payload, timestamp, signature = value.split(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    forged = {
        "signature char": f"{payload}.{timestamp}.{signature[:middle]}{swapped}"
                          f"{signature[middle + 1:]}",
        "payload char": f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}"
                        f".{timestamp}.{signature}",
        "timestamp char": f"{payload}.{timestamp[:-1]}"
                           f"{'A' if timestamp[-1] != 'A' else 'B'}.{signature}",
        "another deployment's key": foreign_jar[COOKIE],
        "the cookie store's salt": serializer(keys, app_salt(SESSION_SALT, "")).dumps(session.id),
        "the salt without the app": serializer(keys, ID_SALT).dumps(session.id),
        "not an id": serializer(keys, app_salt(ID_SALT, "")).dumps("../../etc/passwd"),
        "a number": serializer(keys, app_salt(ID_SALT, "")).dumps(12345),
        "an id one char too long": serializer(keys, app_salt(ID_SALT, "")).dumps(session.id + "x"),
        "no signature": payload,
        "garbage": "InRvdGFsbHktZ3Vlc3NlZCI.x.y",
    }
    before = command_calls(redis_server)
    for name, cookie in forged.items():
        assert cookie != value, name
        for _ in range(2):
            assert await store.load({COOKIE: cookie}) is None, name
        assert digest(cookie) not in store._verified, name
    assert (command_calls(redis_server) - before)["mget"] == 0  # none reached Redis
    assert await store.load(jar) == session  # the genuine cookie still works
