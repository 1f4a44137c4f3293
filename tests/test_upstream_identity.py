"""The identity headers an upstream receives, built once per (identity object, upstream)."""

from __future__ import annotations

import jwt
import pytest
from multidict import CIMultiDict

from proxy import upstream_identity
from proxy.assertion import AssertionSigner
from proxy.config import IdentityConfig
from proxy.identity import Identity
from proxy.session.store import Session, Tokens
from proxy.upstream_identity import IdentityHeaders

AUD = "http://app.internal:8080"
ALICE = Identity(oid="o-alice", tid="t-1", name="Alice", preferred_username="alice@c.example",
                 email="alice@c.example", groups=("g1", "g2"))
TOKENS = Tokens("access-1", "refresh-1", "id-1", 2_000_000_000.0)


def headers_for(builder: IdentityHeaders, session: Session,
                audience: str | None = AUD) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    builder.add(headers, session, audience)
    return headers



@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Wall-clock time for the header cache and the signer, set by the test (clock[0])."""
    now = [1_800_000_000.0]
    monkeypatch.setattr("proxy.upstream_identity.time.time", lambda: now[0])
    monkeypatch.setattr("proxy.assertion.time.time", lambda: now[0])
    return now


@pytest.fixture
def signer() -> AssertionSigner:
    return AssertionSigner.generate("https://proxy.example")


def test_the_same_identity_object_reuses_its_headers(signer: AssertionSigner) -> None:
    builder = IdentityHeaders(IdentityConfig(easy_auth=True), signer)
    first = headers_for(builder, Session(ALICE))
    assert first["X-Forwarded-User"] == "alice@c.example"
    assert first["X-Auth-Assertion"] and first["X-MS-CLIENT-PRINCIPAL-NAME"]
    again = headers_for(builder, Session(ALICE))
    assert list(again.items()) == list(first.items())
    assert len(builder._built) == 1


def test_another_identity_or_upstream_gets_its_own(signer: AssertionSigner) -> None:
    builder = IdentityHeaders(IdentityConfig(), signer)
    bob = Identity(oid="o-bob", tid="t-1", preferred_username="bob@c.example")
    assert headers_for(builder, Session(bob))["X-Forwarded-User"] == "bob@c.example"
    assert headers_for(builder, Session(ALICE))["X-Forwarded-User"] == "alice@c.example"
    other = headers_for(builder, Session(ALICE), "http://other.internal")
    assert other["X-Auth-Assertion"] != headers_for(builder, Session(ALICE))["X-Auth-Assertion"]
    # No route (forward-auth without a match): no assertion at all.
    assert "X-Auth-Assertion" not in headers_for(builder, Session(ALICE), None)


def test_a_reused_object_id_never_serves_another_users_headers(signer: AssertionSigner) -> None:
    builder = IdentityHeaders(IdentityConfig(), signer)
    headers_for(builder, Session(ALICE))
    mallory = Identity(oid="o-mallory", tid="t-1", preferred_username="mallory@c.example")
    # As if mallory's object had been allocated where alice's was: the entry is alice's.
    entries = builder._built._entries
    entries[(id(mallory), AUD, False)] = entries.pop((id(ALICE), AUD, False))
    assert headers_for(builder, Session(mallory))["X-Forwarded-User"] == "mallory@c.example"


def test_the_forward_auth_answer_is_built_once_and_never_another_users() -> None:
    builder = IdentityHeaders(IdentityConfig(), None)
    first = builder.auth_answer(ALICE)
    assert dict(first)["X-Auth-Request-User"] == "alice@c.example"
    assert builder.auth_answer(ALICE) is first  # kept, not rebuilt
    mallory = Identity(oid="o-mallory", tid="t-1", preferred_username="mallory@c.example")
    # As if mallory's object had been allocated where alice's was: the entry is alice's.
    entries = builder._built._entries
    key = (id(ALICE), upstream_identity._AUTH_ANSWER, True)
    entries[(id(mallory), upstream_identity._AUTH_ANSWER, True)] = entries.pop(key)
    assert dict(builder.auth_answer(mallory))["X-Auth-Request-User"] == "mallory@c.example"


def test_tokens_are_per_session_never_cached(signer: AssertionSigner) -> None:
    config = IdentityConfig(pass_access_token=True, pass_id_token=True, easy_auth=True,
                            easy_auth_tokens=True)
    builder = IdentityHeaders(config, signer)
    one = headers_for(builder, Session(ALICE, "s1", 0.0, TOKENS))
    two = headers_for(builder, Session(ALICE, "s2", 0.0, Tokens("access-2", "r", "id-2", 0.0)))
    assert one["X-Forwarded-Access-Token"] == "access-1"
    assert two["X-Forwarded-Access-Token"] == "access-2"
    assert two["X-MS-TOKEN-AAD-ID-TOKEN"] == "id-2"
    assert "X-Forwarded-Access-Token" not in headers_for(builder, Session(ALICE))
    assert one.getall("X-MS-CLIENT-PRINCIPAL") == two.getall("X-MS-CLIENT-PRINCIPAL")


def test_the_assertion_is_renewed_when_half_its_lifetime_is_gone(
        signer: AssertionSigner, clock: list[float]) -> None:
    builder = IdentityHeaders(IdentityConfig(), signer)
    first = headers_for(builder, Session(ALICE))["X-Auth-Assertion"]
    clock[0] += signer.lifetime / 2 - 1
    assert headers_for(builder, Session(ALICE))["X-Auth-Assertion"] == first
    clock[0] += 2  # past half the lifetime: a new one, with a later iat
    renewed = headers_for(builder, Session(ALICE))["X-Auth-Assertion"]
    assert renewed != first
    issued = [jwt.decode(t, options={"verify_signature": False})["iat"] for t in (first, renewed)]
    assert issued[1] > issued[0]


def test_a_clock_gone_back_never_reuses_an_assertion_from_the_future(
        signer: AssertionSigner, clock: list[float]) -> None:
    builder = IdentityHeaders(IdentityConfig(), signer)
    first = headers_for(builder, Session(ALICE))["X-Auth-Assertion"]
    clock[0] -= 30
    again = headers_for(builder, Session(ALICE))["X-Auth-Assertion"]
    assert again != first
    iat = jwt.decode(again, options={"verify_signature": False})["iat"]
    assert iat <= clock[0]


def test_a_reloaded_config_builds_with_its_own_header_names(signer: AssertionSigner) -> None:
    old = IdentityHeaders(IdentityConfig(), signer)
    new = IdentityHeaders(IdentityConfig(headers={"X-User": "preferred_username"}), signer)
    assert "X-Forwarded-User" in headers_for(old, Session(ALICE))
    renamed = headers_for(new, Session(ALICE))
    assert renamed["X-User"] == "alice@c.example" and "X-Forwarded-User" not in renamed


def test_the_cache_is_bounded(signer: AssertionSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_identity, "CACHE_SIZE", 8)
    builder = IdentityHeaders(IdentityConfig(), signer)
    for n in range(50):
        headers_for(builder, Session(Identity(oid=f"o{n}", tid="t", preferred_username=f"u{n}")))
    assert len(builder._built) == 8


def test_forwarded_and_one_line_headers_are_cached_apart(signer: AssertionSigner) -> None:
    """The same user and audience, forwarded (lists split) then in a forward-auth answer
    (one line each): neither gets the other's cached headers."""
    many = Identity(oid="o-many", tid="t-1", groups=tuple(f"group-{n:04}" for n in range(400)))
    builder = IdentityHeaders(IdentityConfig(), signer)
    forwarded = headers_for(builder, Session(many))
    answer: CIMultiDict[str] = CIMultiDict()
    builder.add(answer, Session(many), AUD, one_line=True)
    assert len(forwarded.getall("X-Forwarded-Groups")) > 1
    assert "X-Forwarded-Groups" not in answer and answer["X-Forwarded-Groups-Overflow"] == "true"
    assert len(headers_for(builder, Session(many)).getall("X-Forwarded-Groups")) > 1
