"""Identity-header spoofing in every spelling never reaches the upstream (SPEC §5 "Spoofing",
"Proxy-owned headers").

Each spoofed header carries a unique marker; the upstream records every header it received,
so a single surviving copy in any spelling fails the test.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.attacks.conftest import ShieldFactory, sign_in, store_config
from tests.attacks.harness import Arrival, Upstream, tally, tracebacks
from tests.conftest import ALICE, HTML, Stack

# Every header only the proxy may set (SPEC §5), with the ones these configs add.
DEFAULT_IDENTITY = ["X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Name",
                    "X-Forwarded-Groups", "X-Forwarded-Roles", "X-Forwarded-Object-Id",
                    "X-Forwarded-Tenant-Id"]
ALWAYS = ["X-Forwarded-Access-Token", "X-Forwarded-Id-Token", "X-Auth-Assertion",
          "X-Forwarded-Preferred-Username",
          "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-CLIENT-PRINCIPAL-ID",
          "X-MS-CLIENT-PRINCIPAL-IDP", "X-MS-TOKEN-AAD-ID-TOKEN", "X-MS-TOKEN-AAD-ACCESS-TOKEN",
          "X-MS-TOKEN-AAD-REFRESH-TOKEN", "X-MS-TOKEN-AAD-EXPIRES-ON",
          "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups",
          "X-Auth-Request-Preferred-Username", "X-Auth-Request-Access-Token"]
CUSTOM = {"X-Remote-User": "preferred_username", "X-Remote-Groups": "groups",
          "Remote-Tenant": "tid"}
MARK = "spoofed-"


def spellings(name: str) -> list[str]:
    """The same header as upstream frameworks read it: case and `_`-for-`-` variants."""
    alternating = "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(name))
    variants = [name, name.lower(), name.upper(), name.swapcase(), alternating,
                name.replace("-", "_"), name.lower().replace("-", "_"),
                name.upper().replace("-", "_"), name.replace("-", "_", 1)]
    return list(dict.fromkeys(variants))


def spoofs(names: list[str], copies: int = 2) -> list[tuple[str, str]]:
    """Each spelling of each name, `copies` times (repeated headers), each value unique."""
    out: list[tuple[str, str]] = []
    for name in names:
        for spelling in spellings(name):
            for copy in range(copies):
                out.append((spelling, f"{MARK}{len(out)}-{copy}"))
    return out


def survivors(arrival: Arrival) -> list[tuple[str, str]]:
    return [(k, v) for k, v in arrival.headers if MARK in v]


CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "easy-auth": {"identity": {"easy_auth": True}},
    "easy-auth-tokens": {"identity": {"easy_auth": True, "easy_auth_tokens": True,
                                      "pass_access_token": True, "pass_id_token": True}},
    "custom-names": {"identity": {"headers": CUSTOM, "assertion_header": "X-Identity-Proof"}},
    "assertion-off": {"identity": {"assertion_header": ""}},
}


def owned_for(config: str) -> list[str]:
    names = DEFAULT_IDENTITY + ALWAYS
    if config == "custom-names":
        names = [*names, *CUSTOM, "X-Identity-Proof"]
    # "<header>-Overflow: true" says the proxy left a list out (too long for upstreams'
    # limits): a client's copy would make an app ignore the list it was sent.
    return names + [f"{name}-Overflow" for name in names]


async def send(stack: Stack, path: str, headers: list[tuple[str, str]]) -> int:
    async with stack.client.get(stack.url + path,
                                headers=[*headers, ("X-Innocent", "kept"),
                                         ("x_innocent_too", "kept")]) as resp:
        await resp.read()
        return resp.status


@pytest.mark.parametrize("config", list(CONFIGS))
async def test_signed_in_request_carries_only_the_proxys_identity(
        shield: ShieldFactory, upstream: Upstream, redis_url: str, caplog: pytest.LogCaptureFixture,
        config: str) -> None:
    caplog.set_level(logging.DEBUG)
    extra = CONFIGS[config]
    if config == "easy-auth-tokens":
        extra = {**extra, **store_config("redis", redis_url)}
    stack = await shield(extra)
    await sign_in(stack)
    found: list[tuple[str, str]] = []
    for name in owned_for(config):  # one request per name: aiohttp reads at most 128 headers
        upstream.seen.clear()
        attack = spoofs([name])
        status = await send(stack, "/private/page", attack)
        assert status == 200
        arrival = upstream.seen[-1]
        found += survivors(arrival)
        for _ in attack:
            tally("header-spoofing", refused=not survivors(arrival), crashed=status >= 500)
    assert found == [], found
    # The oracle: other headers pass, in either spelling.
    assert arrival.values("X-Innocent") == ["kept"]
    assert ("x_innocent_too", "kept") in arrival.headers
    user_header = "X-Remote-User" if config == "custom-names" else "X-Forwarded-User"
    assert arrival.values(user_header) == [ALICE]
    if config.startswith("easy-auth"):
        assert len(arrival.values("X-MS-CLIENT-PRINCIPAL")) == 1
        assert arrival.values("X-MS-CLIENT-PRINCIPAL-NAME") == [ALICE]
    if config == "easy-auth-tokens":
        issued = stack.mock.issued[-1]
        assert arrival.values("X-MS-TOKEN-AAD-ACCESS-TOKEN") == [issued["access_token"]]
        assert arrival.values("X-Forwarded-Id-Token") == [issued["id_token"]]
    assert "x-ms-token-aad-refresh-token" not in arrival.names()
    assert tracebacks(caplog.records) == []


@pytest.mark.parametrize("config", ["default", "easy-auth", "custom-names"])
async def test_public_route_forwards_no_identity_at_all(
        shield: ShieldFactory, upstream: Upstream, config: str) -> None:
    stack = await shield(CONFIGS[config])
    for name in owned_for(config):
        attack = spoofs([name])
        status = await send(stack, "/healthz", attack)
        assert status == 200
        arrival = upstream.seen[-1]
        for _ in attack:
            tally("header-spoofing", refused=not survivors(arrival), crashed=status >= 500)
        assert survivors(arrival) == [], name
        assert not [k for k, _ in arrival.headers
                    if k.lower().startswith(("x-ms-", "x-auth-request-", "x-forwarded-user"))]


async def test_owned_header_named_in_connection_is_still_not_the_clients(
        shield: ShieldFactory, upstream: Upstream) -> None:
    # Connection: X-Forwarded-User asks hops to drop it; the proxy's own copy must still be
    # there and the client's must not.
    stack = await shield()
    await sign_in(stack)
    upstream.seen.clear()
    status = await send(stack, "/p", [("Connection", "keep-alive, X-Forwarded-User, X_MS_CLIENT"
                                                     "_PRINCIPAL"),
                                      ("X-Forwarded-User", MARK + "c")])
    assert status == 200
    arrival = upstream.seen[-1]
    tally("header-spoofing", refused=not survivors(arrival), crashed=False)
    assert arrival.values("X-Forwarded-User") == [ALICE]
    assert survivors(arrival) == []


async def test_easy_auth_me_ignores_a_spoofed_principal(shield: ShieldFactory,
                                                        upstream: Upstream) -> None:
    stack = await shield({"identity": {"easy_auth": True}})
    spoof = spoofs(["X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME"], copies=1)
    async with stack.client.get(stack.url + "/.auth/me", headers=spoof) as resp:
        assert resp.status == 401
        assert MARK not in await resp.text()
    await sign_in(stack)
    async with stack.client.get(stack.url + "/.auth/me", headers=spoof) as resp:
        body = await resp.text()
    assert resp.status == 200 and ALICE in body and MARK not in body
    tally("header-spoofing", refused=True, crashed=False)
    assert upstream.seen == []


async def test_browser_navigation_with_spoofed_identity_still_signs_in(
        shield: ShieldFactory, upstream: Upstream) -> None:
    # Headers do not make a session: a navigation with every spoof is sent to Entra.
    stack = await shield({"identity": {"easy_auth": True}})
    async with stack.client.get(stack.url + "/x", allow_redirects=False,
                                headers=[*HTML.items(), *spoofs(ALWAYS, 1)]) as resp:
        assert resp.status == 302
        assert resp.headers["Location"].startswith(stack.idp)
    tally("header-spoofing", refused=True, crashed=False)
    assert upstream.seen == []


FRONT_PROXY = ["X-Original-URL", "X-Original-URI", "X-Rewrite-URL", "X-Forwarded-Prefix",
               "X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Uri", "X-Forwarded-Scheme",
               "X-Original-Host", "X-Client-IP", "True-Client-IP", "X-Forwarded-Method",
               "X-Original-Method", "X-Forwarded-Ssl", "X-Forwarded-Protocol", "X-Url-Scheme",
               "Front-End-Https", "X-Cluster-Client-IP", "CF-Connecting-IP",
               "Fastly-Client-IP", "X-Envoy-External-Address", "Forwarded", "X-Real-IP",
               "X-Forwarded-Host", "X-Forwarded-Proto"]


@pytest.mark.parametrize("path", ["/private/page", "/healthz"])
async def test_front_proxy_headers_from_an_untrusted_peer_never_reach_the_upstream(
        shield: ShieldFactory, upstream: Upstream, path: str) -> None:
    """IIS URL Rewrite serves X-Original-URL, not the path the policy checked; Spring,
    ProxyFix and ASP.NET build links from Prefix/Port: only a trusted proxy may say them."""
    stack = await shield()
    await sign_in(stack)
    for name in FRONT_PROXY:
        upstream.seen.clear()
        attack = spoofs([name])
        status = await send(stack, path, attack)
        assert status == 200
        arrival = upstream.seen[-1]
        for _ in attack:
            tally("forwarding-headers", refused=not survivors(arrival), crashed=status >= 500)
        assert survivors(arrival) == [], name
        assert arrival.values("X-Innocent") == ["kept"]


async def test_front_proxy_headers_from_a_trusted_peer_pass(shield: ShieldFactory,
                                                            upstream: Upstream) -> None:
    stack = await shield({"server": {"trusted_proxies": ["127.0.0.1/32"]}})
    await sign_in(stack)
    upstream.seen.clear()
    status = await send(stack, "/private/page", [("X-Forwarded-Prefix", "/app"),
                                                 ("X-Original-URL", "/private/page")])
    assert status == 200
    arrival = upstream.seen[-1]
    assert arrival.values("X-Forwarded-Prefix") == ["/app"]
    assert arrival.values("X-Original-URL") == ["/private/page"]
