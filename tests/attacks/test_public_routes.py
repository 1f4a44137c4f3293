"""Public-route and route-policy bypasses: a path the proxy reads one way and the upstream
another (SPEC §5 "Lessons from the peers' security advisories").

Every request goes over a raw socket, so the bytes of the request target are exactly those
written here; the recording upstream proves what, if anything, was let through.
"""

from __future__ import annotations

import logging

import aiohttp
import pytest

from tests.attacks.conftest import ShieldFactory, sign_in
from tests.attacks.harness import Upstream, raw_exchange, tally, tracebacks
from tests.conftest import ALICE, Browsers, Stack, port_of

BOB = "bob@contoso.example"  # signed in, but without the Admin role
GATED = [{"path": "/", "public": ["^/healthz$", "^/public/"]},
         {"path": "/admin", "access": {"roles": ["Admin"]}}]

# Paths that look like a public one (^/healthz$ or ^/public/) to a naive matcher, but that an
# upstream may read as something else. None of them may skip sign-in.
PUBLIC_LOOKALIKES = [
    "/healthz/", "/healthz/.", "/healthz/..", "/healthz/../secret", "/healthz/..%2fsecret",
    "/healthz%2f..%2fsecret", "/healthz%2F..%2Fsecret", "/healthz/%2e%2e/secret",
    "/healthz/%2E%2E/secret", "/healthz/.%2e/secret", "/healthz;/../secret", "/healthz;x",
    "/healthz%3bx", "/healthz%3Bx", "/healthz%00", "/healthz%0a", "/healthz%0d%0a", "/healthz%09",
    "/healthz%20", "/healthz%23", "/healthz%23/../secret", "/healthz%3f", "/healthz%3f/../secret",
    "/healthz%252f..%252fsecret", "/healthz%25", "/healthz%5c..%5csecret", "/healthz\\..\\secret",
    "//healthz", "///healthz", "/./healthz", "/%2e/healthz", "/%2fhealthz", "/secret/..%2fhealthz",
    "/secret%2f..%2fhealthz", "/secret?/healthz", "/secret?x=/healthz", "/secret?%2fhealthz",
    "/secret#/healthz", "/secret%23/healthz", "/HEALTHZ", "/healthz%e2%80%8b",
    "/public/../secret", "/public/%2e%2e/secret", "/public/%2e%2e%2fsecret",
    "/public/..;/secret", "/public/..%3b/secret", "/public/..\\secret", "/public/..%5csecret",
    "/public/%252e%252e/secret",
    "/public%2fx", "/public%2Fx", "/public/.%00./secret", "/public/%2e./secret", "//public/x",
    "/secret/../public/x", "/public/x/../../secret",
]
# Encodings that some upstream servers decode into "..": IIS's %uXXXX and overlong UTF-8
# (Tomcat CVE-2008-2938). The path has more than one reading, so no public rule may apply.
LEGACY_DECODINGS = [
    "/public/%u002e%u002e/secret", "/public/%u002E%u002E/secret",
    "/public/%u002e%u002e%u002fsecret", "/public/%c0%ae%c0%ae/secret",
    "/public/%c0%ae%c0%ae%c0%afsecret", "/public/%e0%80%ae%e0%80%ae/secret",
]


def request_bytes(target: str, *extra: str) -> bytes:
    head = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *extra, "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


async def status_for(stack: Stack, target: str, *extra: str) -> int:
    exchange = await raw_exchange(port_of(stack), request_bytes(target, *extra))
    return exchange.statuses[0] if exchange.statuses else 0


async def test_public_rules_open_only_their_own_paths(
        shield: ShieldFactory, upstream: Upstream, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stack = await shield(routes=GATED)
    # The controls: public paths are public, with or without a query.
    for target in ("/healthz", "/healthz?x=/admin", "/public/x", "/public/a/b?y=1"):
        assert await status_for(stack, target) == 200, target
    assert upstream.paths() == ["/healthz", "/healthz?x=/admin", "/public/x", "/public/a/b?y=1"]
    upstream.seen.clear()
    opened = {}
    for target in PUBLIC_LOOKALIKES:
        status = await status_for(stack, target)
        tally("public-route-bypass", refused=400 <= status < 500, crashed=status >= 500)
        if not 400 <= status < 500:
            opened[target] = status
    assert opened == {}
    assert upstream.seen == []
    assert tracebacks(caplog.records) == []


@pytest.mark.parametrize("target", LEGACY_DECODINGS)
async def test_paths_with_legacy_encodings_are_never_public(
        shield: ShieldFactory, upstream: Upstream, target: str) -> None:
    stack = await shield(routes=GATED)
    status = await status_for(stack, target)
    tally("public-route-bypass", refused=400 <= status < 500, crashed=status >= 500)
    assert 400 <= status < 500, status
    assert upstream.seen == []


# Paths that an upstream maps into /admin (Tomcat/Jetty/Spring drop ";params", IIS reads "\"
# as "/"), so the /admin route's policy must apply to them too.
ADMIN_LOOKALIKES = ["/admin/x", "/x/../admin/x", "/%61dmin/x", "//admin/x", "/admin%2fx",
                    "/./admin/x", "/admin/./x", "/public/../admin/x", "/healthz/../admin/x",
                    # absolute-form targets: an upstream reads the path inside the URL
                    "http://127.0.0.1/admin/x", "HTTP://127.0.0.1/admin/x",
                    "http://evil.example/admin/x", "https://127.0.0.1/admin/x",
                    "http://127.0.0.1//admin/x"]
ADMIN_AMBIGUOUS = ["/admin;x/secret", "/admin;/secret", "/admin%3bx/secret", "/admin%3B/secret",
                   "/admin;jsessionid=1/secret", "/admin\\secret", "/admin%5csecret"]


async def bob_session(stack: Stack, browsers: Browsers) -> str:
    browser = await sign_in(stack, BOB, browsers())
    return next(c.value for c in browser.cookie_jar if c.key == "azp_session")


async def test_route_policy_applies_to_every_spelling_of_its_prefix(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield(routes=GATED)
    cookie = f"Cookie: azp_session={await bob_session(stack, browsers)}"
    assert await status_for(stack, "/app/x", cookie) == 200  # the control: bob is signed in
    upstream.seen.clear()
    let_in = {}
    for target in ADMIN_LOOKALIKES:
        status = await status_for(stack, target, cookie)
        tally("route-policy-bypass", refused=status in (400, 403, 404), crashed=status >= 500)
        if status not in (400, 403, 404):
            let_in[target] = status
    assert let_in == {}
    assert upstream.seen == []
    alice = await sign_in(stack, ALICE, browsers())  # and Admin users do get in
    async with alice.get(stack.url + "/admin/x") as resp:
        assert resp.status == 200


@pytest.mark.parametrize("target", ADMIN_AMBIGUOUS)
async def test_path_parameters_and_backslashes_do_not_escape_a_route_policy(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, target: str) -> None:
    stack = await shield(routes=GATED)
    cookie = f"Cookie: azp_session={await bob_session(stack, browsers)}"
    status = await status_for(stack, target, cookie)
    tally("route-policy-bypass", refused=status in (400, 403, 404), crashed=status >= 500)
    assert status in (400, 403, 404), (status, [a.path for a in upstream.seen])
    assert upstream.seen == []


async def test_public_rule_is_not_widened_by_the_host_header(
        shield: ShieldFactory, upstream: Upstream) -> None:
    # A host-scoped public route opens only on that host; other Host spellings stay closed.
    stack = await shield(routes=[{"path": "/", "public": ["^/healthz$"]},
                                 {"path": "/", "host": "open.example", "public": ["^/"]}])
    control = request_bytes("/anything").replace(b"Host: 127.0.0.1", b"Host: open.example")
    assert (await raw_exchange(port_of(stack), control)).statuses == [200]
    assert upstream.paths() == ["/anything"]
    upstream.seen.clear()
    let_in = {}
    for host in ("open.example.evil", "evilopen.example", "open.example@evil", "x.open.example"):
        raw = request_bytes("/secret").replace(b"Host: 127.0.0.1", f"Host: {host}".encode())
        exchange = await raw_exchange(port_of(stack), raw)
        status = exchange.statuses[0] if exchange.statuses else 0
        tally("public-route-bypass", refused=400 <= status < 500, crashed=status >= 500)
        if not 400 <= status < 500:
            let_in[host] = status
    assert let_in == {}
    assert upstream.seen == []


async def test_a_client_sent_original_url_does_not_choose_the_route(
        shield: ShieldFactory, upstream: Upstream) -> None:
    # X-Original-URL / X-Rewrite-URL rewrite the path in some frameworks (IIS, Symfony):
    # the proxy must route on the request line alone, and never let them open a public rule.
    stack = await shield(routes=GATED)
    let_in = {}
    for header in ("X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Uri", "X-Original-URI",
                   "X-Forwarded-Path", "X-Forwarded-Prefix"):
        status = await status_for(stack, "/secret", f"{header}: /healthz")
        tally("public-route-bypass", refused=status == 401, crashed=status >= 500)
        if status != 401:
            let_in[header] = status
    assert let_in == {}
    assert upstream.seen == []


@pytest.mark.parametrize("request_line", ["OPTIONS * HTTP/1.1", "CONNECT 127.0.0.1:443 HTTP/1.1",
                                          "CONNECT evil.example:80 HTTP/1.1",
                                          "GET http://127.0.0.1/admin/x HTTP/1.1"])
async def test_targets_that_are_not_a_path_get_a_400_with_a_request_id(
        shield: ShieldFactory, upstream: Upstream, request_line: str) -> None:
    """Asterisk-, authority- and absolute-form targets: no route matches the first two, and
    the third names a path the route was not chosen on. Each gets the proxy's own 400 with a
    request id (not the web framework's bare 404), and nothing reaches the upstream."""
    stack = await shield(routes=GATED)
    data = f"{request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    exchange = await raw_exchange(port_of(stack), data)
    assert exchange.statuses == [400], exchange
    answer = exchange.responses[0]
    request_id = answer.header("X-Request-Id")
    assert len(request_id) == 32 and request_id.encode() in answer.body, answer
    tally("request-smuggling", refused=True, crashed=False)
    assert upstream.seen == []


async def test_requests_after_the_attacks_still_work(shield: ShieldFactory,
                                                     upstream: Upstream) -> None:
    stack = await shield(routes=GATED)
    for target in PUBLIC_LOOKALIKES[:10]:
        await status_for(stack, target)
    async with aiohttp.ClientSession() as client, client.get(stack.url + "/healthz") as resp:
        assert resp.status == 200
    assert upstream.paths() == ["/healthz"]
