"""Pure core: header hygiene, route matching, public paths, policy, identity."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from multidict import CIMultiDict

from proxy.authorize import Decision, Policy, guest_refusal
from proxy.config import AccessPolicyConfig, UpstreamConfig
from proxy.header_budget import fit_identity_headers
from proxy.headers import (
    is_owned,
    owned_names,
    strip_cookies,
    upstream_headers,
)
from proxy.identity import Identity
from proxy.routes import RouteTable, is_plain_path, normalize_path
from proxy.step_up import StepUp
from proxy.upstream import target_url

OWNED = owned_names({"X-Forwarded-User": "preferred_username", "X-Custom-Id": "oid"})


@pytest.mark.parametrize("name", [
    "X-Forwarded-User", "x-forwarded-user", "X_FORWARDED_USER", "x-custom-id", "X_Custom_Id",
    "X-MS-CLIENT-PRINCIPAL", "x-ms-client-principal-name", "X_MS_TOKEN_AAD_ACCESS_TOKEN",
    "X-Auth-Request-User", "X-Forwarded-Access-Token", "X-Auth-Assertion",
])
def test_owned_headers_in_every_spelling(name: str) -> None:
    assert is_owned(name, OWNED)


def test_upstream_headers_strip_spoofs_and_rebuild_forwarding() -> None:
    incoming = CIMultiDict([
        ("Host", "tools.example.com"), ("X-Forwarded-User", "evil"), ("x_forwarded_user", "e"),
        ("Cookie", "azp_session=abc; azp_session_0=x; azp_session_login_y=z; app=1"),
        ("Connection", "close, X-Secret-Hop"), ("X-Secret-Hop", "1"), ("TE", "trailers"),
        ("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=1.2.3.4"), ("Accept", "a/b"),
    ])
    out = upstream_headers(incoming, owned=OWNED, cookie_prefix="azp_session", peer="10.0.0.9",
                           peer_is_trusted=False, scheme="https", request_id="rid")
    assert "X-Forwarded-User" not in out and "x_forwarded_user" not in out
    assert out["Cookie"] == "app=1"
    assert "X-Secret-Hop" not in out and "TE" not in out and "Forwarded" not in out
    assert out["X-Forwarded-For"] == "10.0.0.9"
    assert out["X-Forwarded-Proto"] == "https" and out["X-Forwarded-Host"] == "tools.example.com"
    assert out["Accept"] == "a/b" and out["X-Request-Id"] == "rid"


def test_cookie_header_with_only_proxy_cookies_is_dropped() -> None:
    assert strip_cookies("azp_session=a; azp_session_1=b", "azp_session") == ""
    assert strip_cookies("azp_sessionx=1; a=2", "azp_session") == "azp_sessionx=1; a=2"


def test_identity_header_values_cannot_inject_lines() -> None:
    evil = Identity(oid="o", tid="t", name="Eve\r\nX-Forwarded-User: admin", groups=("a", "b"))
    evil = dataclasses.replace(evil, groups=("a", "b\r\nX-Forwarded-User: admin"))
    values = dict(fit_identity_headers(evil, {"X-Name": "name", "X-Groups": "groups"},
                                       limit=4096, budget=16384).pairs)
    assert values["X-Name"] == "EveX-Forwarded-User: admin"
    assert values["X-Groups"] == "a,bX-Forwarded-User: admin"


def table(*routes: dict[str, object]) -> RouteTable:
    return RouteTable(tuple(UpstreamConfig(**r) for r in routes),  # type: ignore[arg-type]
                      AccessPolicyConfig())


def test_host_then_longest_prefix() -> None:
    t = table({"path": "/", "url": "http://a"}, {"path": "/app", "url": "http://b"},
              {"path": "/app/admin", "url": "http://c"},
              {"path": "/", "host": "*.example.com", "url": "http://d"},
              {"path": "/", "host": "x.example.com", "url": "http://e"})
    def host_of(host: str, path: str) -> str | None:
        route = t.lookup(host, path)
        return route.upstream.host if route else None
    assert host_of("other", "/apple") == "a"
    assert host_of("other", "/app") == "b"
    assert host_of("other", "/app/x") == "b"
    assert host_of("other", "/app/admin/y") == "c"
    assert host_of("y.example.com", "/app") == "d"
    assert host_of("x.example.com", "/") == "e"
    assert host_of("evilexample.com", "/") == "a"
    assert host_of("example.com", "/") == "a"


def test_case_sensitive_prefix_matches_only_its_own_spelling() -> None:
    t = table({"path": "/", "url": "http://a"}, {"path": "/app", "url": "http://b"},
              {"path": "/App/Admin", "url": "http://c", "case_sensitive": True})
    assert t.lookup("h", "/App/Admin/x").upstream.host == "c"  # type: ignore[union-attr]
    assert t.lookup("h", "/app/admin/x").upstream.host == "b"  # type: ignore[union-attr]


def test_unmatched_is_none() -> None:
    assert table({"path": "/app", "url": "http://b"}).lookup("h", "/other") is None


@pytest.mark.parametrize("raw,expected", [
    ("/a/../b", "/b"), ("/a/%2e%2e/b", "/b"), ("//a//b/", "/a/b/"), ("/a%2fb", "/a/b"),
    ("/", "/"), ("/x?q=/../y", "/x"),
    # `\\` is `/` (IIS), `;params` end at the next `/` (Tomcat), all of them dropped
    ("/admin\\secret", "/admin/secret"), ("/admin\\..\\y", "/y"),
    ("/admin;x/secret", "/admin/secret"), ("/admin;x;y/secret", "/admin/secret"),
    ("/admin;x/..;y/z", "/z"),
    # nothing left, or no leading slash: still a path under "/"
    ("", "/"), ("?x=1", "/"), (";x", "/"), ("a/b", "/a/b"),
    ("//Xray/", "/Xray/"),  # only the doubled slash goes, not the letters after it
    ("/admin;a;b/secret", "/admin/secret"), ("//X/y", "/X/y"),
])
def test_normalize_path(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", [
    "/public/../admin", "/public%2f..%2fadmin", "/public;x", "/public%3bx", "//public",
    "/public/./x", "/public%00", "/public%23", "/public\\x", "/public%5cx", "/public%252f",
])
def test_ambiguous_paths_are_never_public(raw: str) -> None:
    assert not is_plain_path(raw)
    route = table({"path": "/", "url": "http://a", "public": ("^/public",)}).routes[0]
    assert not route.is_public(raw)


def test_public_regex_ignores_query() -> None:
    route = table({"path": "/", "url": "http://a", "public": ("^/healthz$",)}).routes[0]
    assert route.is_public("/healthz")
    assert not route.is_public("/admin?x=/healthz")
    assert not route.is_public("/admin?/healthz")
    # the query starts at the first "?": a later one is part of the query, not the path
    assert is_plain_path("/healthz?a=?b") and route.is_public("/healthz?a=?b")


def test_strip_prefix() -> None:
    route = table({"path": "/app", "url": "http://a", "strip_prefix": True}).routes[0]
    assert route.upstream_path("/app/x?y=1") == "/x?y=1"
    assert route.upstream_path("/app") == "/"
    assert route.upstream_path("/app/x/y") == "/x/y"
    assert route.upstream_path("/app/x?a=?b") == "/x?a=?b"  # the query starts at the first "?"
    assert route.upstream_path("/APP/xyz/w") == "/xyz/w"  # cut by segments, whatever the case
    kept = table({"path": "/app", "url": "http://a"}).routes[0]
    assert kept.upstream_path("/app/x/../y?q") == "/app/x/../y?q"  # raw unless stripping
    # The "/" route has no prefix to strip: the target goes upstream as sent, not normalized.
    for path in ("/", "//"):
        root = table({"path": path, "url": "http://a", "strip_prefix": True}).routes[0]
        assert root.upstream_path("/a%2Fb;c?x") == "/a%2Fb;c?x"


def test_the_upstream_url_path_is_joined_once() -> None:
    # The upstream URL's own path (any trailing slash dropped) comes first, then the request's.
    route = table({"path": "/app", "url": "http://a:81/base/X/", "strip_prefix": True}).routes[0]
    assert route.upstream_target("/app/y?q") == "/base/X/y?q"
    assert str(target_url(route, "/app/y?q")) == "http://a:81/base/X/y?q"
    assert str(target_url(route, "/app/y?q", websocket=True)) == "ws://a:81/base/X/y?q"


def test_a_prefix_is_matched_whole_and_labelled_with_its_host() -> None:
    t = table({"path": "/", "url": "http://a"}, {"path": "/X/", "url": "http://x"},
              {"path": "/x", "host": "Admin.Local", "url": "http://h"})
    assert t.lookup("", "/X/y").upstream.host == "x"  # type: ignore[union-attr]
    assert t.lookup("", "/Xy").upstream.host == "a"  # type: ignore[union-attr]
    assert [r.name for r in t.routes] == ["/", "/X/", "admin.local/x"]  # logs, metrics


ALICE = Identity(oid="o", tid="11111111-1111-4111-8111-111111111111",
                 preferred_username="alice@contoso.com", email="alice@contoso.com",
                 groups=("G1",), roles=("Admin",))


def policy(**kw: Any) -> Policy:
    return Policy.from_config(AccessPolicyConfig(**kw))


def test_policy_and_across_kinds_or_within() -> None:
    assert policy().decide(ALICE).allowed
    assert policy(domains=("contoso.com",), groups=("g1", "g9")).decide(ALICE).allowed
    assert not policy(domains=("contoso.com",), groups=("g9",)).decide(ALICE).allowed
    assert not policy(roles=("Reader",)).decide(ALICE).allowed
    assert policy(emails=("ALICE@contoso.com",)).decide(ALICE).allowed
    assert not policy(tenants=("22222222-2222-4222-8222-222222222222",)).decide(ALICE).allowed


BOB = Identity(oid="o2", tid="22222222-2222-4222-8222-222222222222",
               preferred_username="bob@contoso.com")  # no verified email at all
ADMIN_TENANT = ("11111111-1111-4111-8111-111111111111",)
OTHER_TID = "22222222-2222-4222-8222-222222222222"


@pytest.mark.parametrize(("rules", "who", "reason"), [
    ({"emails": ("carol@contoso.com",)}, ALICE, "no verified email in the allowed list"),
    ({"emails": ("bob@contoso.com",)}, BOB, "no verified email (Entra's xms_edov) to check"),
    ({"domains": ("fabrikam.com",)}, ALICE, "verified email domain not allowed"),
    ({"domains": ("contoso.com",)}, BOB, "no verified email (Entra's xms_edov) to check"),
    ({"groups": ("g9",)}, ALICE, "not a member of an allowed group"),
    ({"roles": ("admin",)}, ALICE, "no allowed app role"),  # app roles are case-sensitive
    ({"tenants": ADMIN_TENANT}, BOB, "tenant not allowed"),
    # AND across kinds: each rule passed is not enough while another fails.
    ({"emails": ("alice@contoso.com",), "roles": ("Reader",)}, ALICE, "no allowed app role"),
    ({"domains": ("contoso.com",), "tenants": ("x",)}, ALICE, "tenant not allowed"),
    ({"groups": ("G1",), "domains": ("x.com",)}, ALICE, "verified email domain not allowed"),
])
def test_policy_refusals_name_the_rule(rules: dict[str, tuple[str, ...]], who: Identity,
                                       reason: str) -> None:
    decision = policy(**rules).decide(who)
    assert (decision.allowed, decision.reason) == (False, reason)


def test_policy_allows_what_each_rule_lists() -> None:
    for rules in ({"emails": ("Alice@Contoso.com",)}, {"domains": ("@CONTOSO.com",)},
                  {"groups": ("g1",)}, {"roles": ("Admin",)}, {"tenants": ADMIN_TENANT},
                  {"emails": ("alice@contoso.com",), "domains": ("contoso.com",),
                   "groups": ("G1",), "roles": ("Admin",), "tenants": ADMIN_TENANT}):
        decision = policy(**rules).decide(ALICE)
        assert (decision.allowed, decision.reason) == (True, "allowed"), rules


def test_tenant_rule_ignores_the_case_of_the_guid() -> None:
    tid = "72f988bf-86f1-41af-91ab-2d7cd011db47"  # hex letters: upper and lower differ
    for rule, own in ((tid.upper(), tid), (tid, tid.upper())):
        member = Identity(oid="o", tid=own)
        assert policy(tenants=(rule,)).decide(member).allowed, (rule, own)


def test_step_up_comes_from_the_access_config() -> None:
    step_up = policy(auth_context=("c1", "c2"), max_auth_age=90.0, require_mfa=True).step_up
    assert step_up == StepUp(("c1", "c2"), 90, True)


GUEST_TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
NO_ACCT = "no acct claim to tell members from guests (add the acct optional claim)"
GUEST = "guest accounts are not allowed (members_only)"


@pytest.mark.parametrize(("tid", "extra", "reason"), [
    (GUEST_TID, {}, NO_ACCT),  # Entra did not say: fail closed
    (GUEST_TID, {"acct": "1"}, GUEST),
    (GUEST_TID, {"acct": "0", "idp": f"https://sts.windows.net/{OTHER_TID}/"}, GUEST),
    (GUEST_TID, {"acct": "0"}, None),  # a member: no idp
    # idp naming the token's own tenant, in either case, is no guest
    (GUEST_TID, {"acct": "0", "idp": f"https://sts.windows.net/{GUEST_TID.upper()}/"}, None),
    (GUEST_TID.upper(), {"acct": "0", "idp": f"https://sts.windows.net/{GUEST_TID}/"}, None),
])
def test_members_only_refuses_guests_and_fails_closed(tid: str, extra: dict[str, str],
                                                      reason: str | None) -> None:
    who = Identity(oid="o", tid=tid, email="alice@contoso.com", extra=extra)
    assert guest_refusal(who) == (Decision(False, reason) if reason else None)
    for rules in ({}, {"emails": ("alice@contoso.com",)}):  # before and with the rules
        decision = policy(members_only=True, **rules).decide(who)
        assert (decision.allowed, decision.reason) == (not reason, reason or "allowed")
        assert policy(**rules).decide(who).allowed  # members_only off: guests pass


def test_domain_rule_needs_exactly_one_at() -> None:
    tricky = Identity(oid="o", tid="t", email="evil@contoso.com@attacker.com")
    assert not policy(domains=("contoso.com",)).decide(tricky).allowed
    assert not policy(domains=("attacker.com",)).decide(tricky).allowed
    lookalike = Identity(oid="o", tid="t", email="a@evilcontoso.com")
    assert not policy(domains=("contoso.com",)).decide(lookalike).allowed


def test_identity_round_trip_and_claims() -> None:
    claims = {"oid": "o", "tid": "t", "groups": ["a", 5, {"x": 1}], "upn": "u@x", "name": 3}
    identity = Identity.from_claims(claims, ("upn",))
    assert identity.groups == ("a", "5") and identity.name == ""
    assert identity.claim("upn") == "u@x" and identity.claim("missing") == ""
    assert Identity.from_claims(identity.to_dict()) == identity
