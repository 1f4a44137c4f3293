"""The cookie store and login state, as pure units (no sockets needed)."""

from __future__ import annotations

import hashlib
import re
import secrets
import time

import pytest
from itsdangerous import TimestampSigner

from proxy.config import Secret, SessionConfig
from proxy.errors import SessionTooLarge
from proxy.identity import Identity
from proxy.session.budget import CHUNK_SIZE, MAX_CHUNKS, SESSION_MAX
from proxy.session.cookie_store import CookieStore
from proxy.session.login_state import LoginState, LoginStateError, LoginStates
from proxy.session.signing import LOGIN_SALT, VerifiedCookies, app_salt, serializer
from proxy.session.store import Session, Tokens, tokens_from, with_upstream_token

OLD, NEW = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
ALICE = Identity(oid="o-1", tid="t-1", preferred_username="alice@contoso.example",
                 groups=("g1", "g2"), roles=("Admin",))


def store(**kw: object) -> CookieStore:
    return CookieStore(SessionConfig(**{"secret": Secret(OLD), **kw}))  # type: ignore[arg-type]


def as_jar(specs: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {s.name: s.value for s in specs if s.max_age is not None}


async def test_round_trip_keeps_identity_and_never_tokens() -> None:
    specs = await store().save(Session(ALICE), {})
    assert [s.name for s in specs] == ["azp_session"]
    assert store().load_identity(as_jar(specs)) == ALICE
    assert "token" not in specs[0].value.lower()


async def test_rotation_old_cookies_still_valid_new_ones_signed_with_new_key() -> None:
    old_cookie = as_jar(await store().save(Session(ALICE), {}))
    rotated = store(secret=Secret(""), secrets=(Secret(NEW), Secret(OLD)))
    assert rotated.load_identity(old_cookie) == ALICE
    new_cookie = as_jar(await rotated.save(Session(ALICE), {}))
    assert store(secret=Secret(NEW)).load_identity(new_cookie) == ALICE
    assert store().load_identity(new_cookie) is None  # signed with NEW, not OLD


async def test_foreign_secret_and_tampering_are_anonymous() -> None:
    cookie = as_jar(await store().save(Session(ALICE), {}))
    assert store(secret=Secret(NEW)).load_identity(cookie) is None
    value = cookie["azp_session"]
    flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    assert store().load_identity({"azp_session": flipped}) is None


async def test_identity_without_oid_or_tid_is_not_a_session() -> None:
    cookie = as_jar(await store().save(Session(Identity(oid="", tid="t")), {}))
    assert store().load_identity(cookie) is None


async def test_large_identity_is_chunked_and_stale_chunks_are_deleted() -> None:
    big = Identity(oid="o", tid="t", groups=tuple(secrets.token_hex(18) for _ in range(170)))
    specs = await store().save(Session(big), {"azp_session": "old-unchunked",
                                              "azp_session_12": "stale"})
    chunks = [s for s in specs if s.max_age is not None]
    assert 1 < len(chunks) <= MAX_CHUNKS and all(len(s.value) <= CHUNK_SIZE for s in chunks)
    assert sum(len(s.value) for s in chunks) <= SESSION_MAX
    assert {s.name for s in specs if s.max_age is None} == {"azp_session", "azp_session_12"}
    assert any(s.name == "azp_session" and s.max_age is None for s in specs)
    assert store().load_identity(as_jar(specs)) == big
    small = await store().save(Session(ALICE), as_jar(specs))
    assert {s.name for s in small if s.max_age is None} == {c.name for c in chunks}


async def test_an_identity_past_the_budget_is_refused_not_written() -> None:
    """Never write more chunks than are read back (a sign-in loop), nor cookies past what
    browsers and nginx keep: the sign-in fails with a page naming the fix instead."""
    huge = Identity(oid="o", tid="t", groups=tuple(secrets.token_hex(18) for _ in range(250)))
    with pytest.raises(SessionTooLarge) as info:
        await store().save(Session(huge), {})
    assert "server" in info.value.public and info.value.context["groups"] == "250"


async def test_sign_out_deletes_every_chunk_whatever_its_number() -> None:
    jar = {"azp_session": "a", "azp_session_0": "b", "azp_session_9": "c",
           "azp_session_10": "d", "azp_session_123": "e", "azp_session_login_x": "keep",
           "azp_sessionx_1": "keep", "other": "keep"}
    deleted = {s.name for s in await store().clear(jar) if s.max_age is None}
    assert deleted == {"azp_session", "azp_session_0", "azp_session_9", "azp_session_10",
                       "azp_session_123"}


def test_chunk_reading_is_capped() -> None:
    jar = {f"azp_session_{i}": "x" for i in range(MAX_CHUNKS + 5)}
    assert store().load_identity(jar) is None


def logins() -> LoginStates:
    return LoginStates(SessionConfig(secret=Secret(OLD)))


def test_login_state_single_use_and_bound_to_its_cookie() -> None:
    states = logins()
    login = LoginState.new("/after")
    jar = as_jar(states.start(login, {}))
    assert states.finish(login.state, jar) == login
    with pytest.raises(LoginStateError, match="already used"):
        states.finish(login.state, jar)


@pytest.mark.parametrize("state", [None, "", "short", "x" * 100, "../../etc/passwd" + "a" * 30])
def test_malformed_state_is_refused(state: str | None) -> None:
    with pytest.raises(LoginStateError):
        logins().finish(state, {})


def test_state_of_another_login_or_secret_is_refused() -> None:
    states = logins()
    a, b = LoginState.new("/a"), LoginState.new("/b")
    jar_a = as_jar(states.start(a, {}))
    with pytest.raises(LoginStateError):
        states.finish(b.state, jar_a)  # B's state with only A's cookie
    swapped = {states.prefix + b.state: jar_a[states.prefix + a.state]}
    with pytest.raises(LoginStateError, match="does not match"):
        states.finish(b.state, swapped)  # A's signed cookie renamed to B's slot
    other = LoginStates(SessionConfig(secret=Secret(NEW)))
    with pytest.raises(LoginStateError, match="state is invalid"):
        other.finish(a.state, jar_a)


def test_login_cookies_are_signed_uncompressed_and_compressed_ones_still_read() -> None:
    """The login state (random strings) is signed without zlib; a cookie written by an
    earlier version (zlib, "." prefix) is still accepted, and tampering with either fails."""
    states = logins()
    login = LoginState.new("/after?x=1")
    (spec,) = [s for s in states.start(login, {}) if s.max_age is not None]
    assert not spec.value.startswith(".")
    assert states.finish(login.state, {spec.name: spec.value}) == login
    older = LoginState.new("/older")
    compressed = serializer([OLD], app_salt(LOGIN_SALT, "")).dumps(
        {"s": older.state, "n": older.nonce, "v": older.verifier, "t": "/" + "a" * 200})
    assert compressed.startswith(".")
    assert states.finish(older.state, {states.prefix + older.state: compressed}).target == (
        "/" + "a" * 200)
    for state, value in ((login.state, spec.value), (older.state, compressed)):
        forged = value[:-2] + ("AA" if value[-2:] != "AA" else "BB")
        with pytest.raises(LoginStateError, match="state is invalid"):
            logins().finish(state, {states.prefix + state: forged})  # (a fresh replay cache)


def test_pending_login_cookies_are_capped() -> None:
    states = logins()
    jar: dict[str, str] = {}
    for i in range(12):
        specs = states.start(LoginState.new(f"/{i}"), jar)
        for spec in specs:
            if spec.max_age is None:
                jar.pop(spec.name, None)
            else:
                jar[spec.name] = spec.value
    assert len(jar) <= 5


async def test_verified_cookie_cache_never_outlives_the_cookie() -> None:
    import asyncio

    short = store(max_age=1.5)
    jar = as_jar(await short.save(Session(ALICE), {}))
    assert short.load_identity(jar) == ALICE
    assert short.load_identity(jar) == ALICE  # served from the cache
    await asyncio.sleep(1.7)
    assert short.load_identity(jar) is None


async def test_verified_cookie_cache_is_per_store_and_exact() -> None:
    jar = as_jar(await store().save(Session(ALICE), {}))
    assert store().load_identity(jar) == ALICE
    other = store(secret=Secret(NEW))
    assert other.load_identity(jar) is None  # another secret never sees the first one's cache
    value = jar["azp_session"]
    assert store().load_identity({"azp_session": value + "x"}) is None


@pytest.mark.parametrize("expires_in", ["inf", "nan", "soon", float("inf"), -5])
def test_an_unreadable_or_endless_lifetime_is_already_expired(expires_in: object) -> None:
    before = time.time()
    tokens = tokens_from({"access_token": "a", "expires_in": expires_in})
    assert tokens.expires_at <= time.time()
    assert before - 10 <= tokens.expires_at


def test_the_upstream_token_survives_a_sign_in_refresh_and_a_record_round_trip() -> None:
    old = Tokens("a", "r1", "i", 0.0)
    got = with_upstream_token(old, {"access_token": "u", "refresh_token": "r2",
                                    "expires_in": 600}, "api://x/.default")
    assert (got.upstream_token, got.refresh_token, got.access_token) == ("u", "r2", "a")
    assert got.upstream_scope == "api://x/.default"
    assert got.upstream_expires_at > time.time() + 500
    refreshed = tokens_from({"access_token": "a2", "expires_in": 3600}, got)
    assert refreshed.upstream_token == "u" and refreshed.refresh_token == "r2"
    assert refreshed.upstream_scope == "api://x/.default"
    assert Tokens.from_dict(refreshed.to_dict()) == refreshed
    assert Tokens.from_dict({"at": "a", "rt": "r", "it": "i", "exp": 1}).upstream_token == ""


def stamped(keys: list[str], payload: object, at: int) -> str:
    """A cookie value signed with `keys` as if at the Unix second `at`."""
    class At(TimestampSigner):
        def get_timestamp(self) -> int:
            return at

    signer = serializer(keys, "test")
    signer.signer = At
    return signer.dumps(payload)


def test_verified_cookies_verify_once_and_hold_the_exact_max_age() -> None:
    """A value is verified and accepted once, then served from the cache; itsdangerous
    counts whole seconds (an age equal to max_age passes it) and accepts nothing signed in
    the future only when given max_age: neither may outlive max_age."""
    accepted: list[object] = []

    def accept(payload: object) -> object:
        accepted.append(payload)
        return payload

    cookies = VerifiedCookies(serializer([OLD], "test"), 61, accept)
    fresh = stamped([OLD], "fresh", int(time.time()))
    key = hashlib.sha256(fresh.encode()).digest()
    assert key not in cookies
    assert cookies.load(fresh) == "fresh" and cookies.load(fresh) == "fresh"
    assert accepted == ["fresh"] and key in cookies
    now = int(time.time())
    assert cookies.load(stamped([OLD], "exactly max_age", now - 61)) is None
    assert cookies.load(stamped([OLD], "from the future", now + 3600)) is None
    assert cookies.load(stamped([NEW], "another key", now)) is None


def refusal(states: LoginStates, state: str | None, jar: dict[str, str]) -> str:
    with pytest.raises(LoginStateError) as info:
        states.finish(state, jar)
    return str(info.value)


def test_login_state_refusals_say_why_in_full() -> None:
    """Each reason is the sentence on the user's 400 page and in the log line."""
    states = logins()
    login, other = LoginState.new("/after"), LoginState.new("/other")
    jar = as_jar(states.start(login, {}))
    mine = jar[states.prefix + login.state]
    assert refusal(states, "short", jar) == "the sign-in response has no valid state"
    assert refusal(states, other.state, jar) == (
        "no sign-in is pending in this browser (expired, already finished, or started in "
        "another browser)")
    assert refusal(states, login.state, {states.prefix + login.state: mine[:-4]}) == (
        "the sign-in state is invalid")
    assert refusal(states, other.state, {states.prefix + other.state: mine}) == (
        "the sign-in state does not match")
    assert states.finish(login.state, jar) == login
    assert refusal(states, login.state, jar) == "this sign-in response was already used"


def test_new_login_state_is_three_disjoint_random_runs() -> None:
    """State, nonce and PKCE verifier: 43, 43 and 46 base64url characters (RFC 7636 wants
    43 to 128 of [A-Za-z0-9-._~]) cut from one 132-character run without padding, so no
    character of one is also part of another."""
    for _ in range(20):
        login = LoginState.new("/t")
        assert [len(login.state), len(login.nonce), len(login.verifier)] == [43, 43, 46]
        assert re.fullmatch(r"[A-Za-z0-9_-]+", login.state + login.nonce + login.verifier)
