"""A request the proxy reads as one route and an upstream as another (issue 16 items 1-3):
other spellings of a path's case, dot segments and separators forwarded raw, and variants
of the Host header. Bob is signed in but lacks the Admin role that `/admin/` and the host
`admin.local` require; none of these may bring him, with his identity, to the upstream
there. Requests go over raw sockets so their bytes are exactly these; the recording
upstream shows what arrived, and a real nginx shows what a real server would serve.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.attacks.conftest import ShieldFactory, sign_in, store_config
from tests.attacks.harness import Upstream, raw_exchange, tally
from tests.conftest import ALICE, Browsers, Stack, port_of
from tests.support.fronts import nginx

BOB = "bob@contoso.example"
ADMIN_FIRST = re.compile(r"admin(?![a-z0-9_-])")  # /admin, /admin., /admin;x, not /administrator
ADMIN_ONLY = {"roles": ["Admin"]}
ROUTES: list[dict[str, Any]] = [{"path": "/"},
          {"path": "/admin", "access": ADMIN_ONLY},
          {"path": "/", "host": "admin.local", "access": ADMIN_ONLY}]

# Item 1: ASP.NET Core, IIS and Express route these to /admin.
CASE = ["/ADMIN/secret", "/Admin/secret", "/aDmIn/secret", "/ADMIN", "/Admin/",
        "/ADMIN%2Fsecret", "/ADMIN%2fsecret", "/%41DMIN/secret"]
# Item 2: dot segments, encoded separators and what Windows, C and URL parsers drop. Express
# mounts and Werkzeug's <path:> serve the unresolved ones as /admin; IIS drops trailing dots
# and spaces; C code stops at NUL; URL parsers drop tabs and newlines; some servers decode
# twice or fold full-width letters.
DOTS = ["/admin/../y", "/admin/%2e%2e/y", "/admin/%2E%2E/y", "/admin/.%2e/y",
        "/admin/x%2f..%2f..%2fy", "/admin/x%2F..%2F..%2Fy", "/admin/..;/y", "/admin/..%3b/y",
        "/admin/x/../../y", "/ADMIN/../y", "/admin\\..\\y", "/admin%5c..%5cy",
        "/admin%252f..%252fy", "/admin/%252e%252e/y", "/admin%00/x", "/admin%09/x",
        "/admin%0a/x", "/admin%0d/x", "/admin./x", "/admin../x", "/admin%2e/x",
        "/admin%20/x", "/admin.%20/x", "/admin%00", "/admin.",
        "/%ef%bc%a1%ef%bc%a4%ef%bc%ad%ef%bc%a9%ef%bc%ae/x",  # full-width ADMIN
        "/admin%ef%bc%8fx", "/y/..%2fadmin/x", "/y/%2e%2e/admin/x"]
# Item 3: every one of these names admin.local (or is malformed); none may fall through to
# the host-less route, which is open to every signed-in user.
HOSTS = ["ADMIN.LOCAL", "Admin.Local", "admin.local.", "ADMIN.LOCAL.", "admin.local.:{port}",
         "admin.local:{port}", "admin.local:80", "admin.local:80:1", "[admin.local]",
         "[admin.local]:{port}", "admin.local%2e", "admin.local@127.0.0.1",
         "127.0.0.1@admin.local", "admin.local:x", "admin.local:99999", "admin.local:-1",
         "admin.local..", ".admin.local", "admin..local", "admin.local:+80", "admin.local\t",
         "admin.locaļ", "admin.local:80 ", "[::1%25lo]", "a" * 300 + ".admin.local"]
# Paths that look unusual but have one reading: forwarded, raw, to the route they are on.
PLAIN = ["/y", "/app/./x", "/app/../y", "/files/a%20b.txt", "/docs/v1.0./", "/x%2fy",
         "/.well-known/x", "/app;jsessionid=1/x", "/administrator", "/admin-x/y"]


def request_bytes(target: str, host: str, cookie: str = "") -> bytes:
    head = [f"GET {target} HTTP/1.1", f"Host: {host}",
            *([f"Cookie: azp_session={cookie}"] if cookie else []), "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8")


async def send(stack: Stack, target: str, cookie: str = "",
               host: str = "127.0.0.1") -> tuple[int, bytes]:
    exchange = await raw_exchange(port_of(stack), request_bytes(target, host, cookie))
    if not exchange.responses:
        return 0, b""
    return exchange.responses[0].status, exchange.responses[0].body


async def session_of(stack: Stack, browsers: Browsers, user: str) -> str:
    browser = await sign_in(stack, user, browsers())
    return next(c.value for c in browser.cookie_jar if c.key == "azp_session")


def reads_as_admin(raw_path: str) -> bool:
    """What a lenient upstream makes of the bytes it got: decoded (once or twice), in any
    case, `\\` as `/`, dots not resolved. Nothing Bob sends may arrive looking like this."""
    path = raw_path.split("?", 1)[0]
    once = unquote(path)
    return any(ADMIN_FIRST.match(p.replace("\\", "/").lower().lstrip("/"))
               for p in (path, once, unquote(once)))


@pytest.mark.parametrize("store", ["cookie", "memory", "redis"])
async def test_other_spellings_of_a_gated_path_do_not_reach_its_upstream(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, redis_url: str,
        store: str) -> None:
    stack = await shield(store_config(store, redis_url), routes=ROUTES)
    bob = await session_of(stack, browsers, BOB)
    assert (await send(stack, "/admin/secret", bob))[0] == 403  # the controls
    assert (await send(stack, "/app/x", bob))[0] == 200
    assert upstream.identified_since(0)  # the control: a forwarded request carries Bob
    upstream.seen.clear()
    let_in = {}
    for family, targets in (("path-case", CASE), ("path-readings", DOTS)):
        for target in targets:
            before = len(upstream.seen)
            status, _ = await send(stack, target, bob)
            tally(family, refused=status in (400, 403, 404), crashed=status >= 500 or status == 0,
                  reached=upstream.identified_since(before))
            if status not in (400, 403, 404):
                let_in[target] = status
    assert let_in == {}
    assert upstream.seen == []  # nothing arrived, with an identity or without


async def test_a_path_with_one_reading_is_forwarded_unchanged(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield(routes=ROUTES)
    bob = await session_of(stack, browsers, BOB)
    for target in PLAIN:
        assert (await send(stack, target, bob))[0] == 200, target
    assert upstream.paths() == PLAIN
    assert not any(reads_as_admin(path) for path in upstream.paths())


async def test_the_gated_route_serves_every_case_of_its_prefix_to_whom_it_admits(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield(routes=ROUTES)
    alice = await session_of(stack, browsers, ALICE)
    for target in ("/ADMIN/secret", "/Admin/Secret?q=1"):
        assert (await send(stack, target, alice))[0] == 200, target
    assert upstream.paths() == ["/ADMIN/secret", "/Admin/Secret?q=1"]  # raw, as sent
    # A refusal is a 400 page naming the request id, never a page from the upstream.
    status, body = await send(stack, "/admin/../y", alice)
    assert status == 400 and b'"request_id": "' in body, body[:300]
    assert len(upstream.seen) == 2


async def test_a_case_sensitive_route_matches_only_its_own_spelling(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield(routes=[{"path": "/"},
                                 {"path": "/Admin", "case_sensitive": True,
                                  "access": ADMIN_ONLY}])
    bob = await session_of(stack, browsers, BOB)
    assert (await send(stack, "/Admin/x", bob))[0] == 403
    # The upstream behind /Admin told /admin from /Admin itself: /admin is the / route's.
    assert (await send(stack, "/admin/x", bob))[0] == 200
    assert upstream.paths() == ["/admin/x"]


async def test_strip_prefix_cuts_the_prefix_in_any_case(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield(routes=[{"path": "/"},
                                 {"path": "/app", "strip_prefix": True}])
    alice = await session_of(stack, browsers, ALICE)
    for target in ("/APP/x?y=1", "/app", "/App/"):
        assert (await send(stack, target, alice))[0] == 200
    assert upstream.paths() == ["/x?y=1", "/", "/"]


@pytest.mark.parametrize("store", ["cookie", "redis"])
async def test_host_variants_do_not_fall_through_to_the_open_route(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, redis_url: str,
        store: str) -> None:
    stack = await shield(store_config(store, redis_url), routes=ROUTES)
    port = port_of(stack)
    bob = await session_of(stack, browsers, BOB)
    assert (await send(stack, "/x", bob, host="admin.local"))[0] == 403  # the controls
    assert (await send(stack, "/x", bob, host="other.local"))[0] == 200
    upstream.seen.clear()
    let_in = {}
    for host in HOSTS:
        before = len(upstream.seen)
        status, _ = await send(stack, "/x", bob, host=host.format(port=port))
        tally("host-variants", refused=status in (400, 403, 404),
              crashed=status >= 500 or status == 0, reached=upstream.identified_since(before))
        if status not in (400, 403, 404):
            let_in[host] = status
    assert let_in == {}
    assert upstream.seen == []


@pytest.mark.parametrize("host,forwarded", [
    ("ADMIN.LOCAL.:{port}", "admin.local:{port}"), ("Admin.Local", "admin.local"),
    ("admin.local:80", "admin.local"), ("admin.local.", "admin.local"),
    ("[0:0::1]:{port}", "[::1]:{port}")])
async def test_only_the_normalised_host_goes_upstream(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers, host: str,
        forwarded: str) -> None:
    routes = [{**route, "preserve_host": True} for route in ROUTES]
    stack = await shield(routes=routes)
    port = port_of(stack)
    alice = await session_of(stack, browsers, ALICE)
    assert (await send(stack, "/x", alice, host=host.format(port=port)))[0] == 200
    arrival = upstream.seen[-1]
    assert arrival.values("X-Forwarded-Host") == [forwarded.format(port=port)]
    assert arrival.values("Host") == [forwarded.format(port=port)]  # preserve_host


async def test_two_host_headers_are_refused(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield(routes=ROUTES)
    bob = await session_of(stack, browsers, BOB)
    raw = request_bytes("/x", "other.local", bob).replace(
        b"Host: other.local", b"Host: other.local\r\nHost: admin.local")
    exchange = await raw_exchange(port_of(stack), raw)
    status = exchange.statuses[0] if exchange.statuses else 0
    tally("host-variants", refused=400 <= status < 500, crashed=status >= 500 or status == 0)
    assert 400 <= status < 500, status
    assert upstream.seen == []


# --- what a real server does with the same bytes ---------------------------------------------

# An app that, like ASP.NET and IIS, routes /admin in any case (nginx decodes the path and
# resolves dot segments before it picks a location).
ADMIN_ANY_CASE = """
    location ~* ^/admin(/|$) { return 200 "admin $uri"; }
    location / { return 200 "open $uri"; }
"""


@pytest.fixture
async def nginx_upstream(tmp_path: Path) -> AsyncIterator[str]:
    async with nginx(tmp_path, ADMIN_ANY_CASE) as url:
        yield url


async def nginx_serves(url: str, target: str) -> bytes:
    port = int(url.rsplit(":", 1)[1])
    exchange = await raw_exchange(port, request_bytes(target, "127.0.0.1"))
    return exchange.responses[0].body if exchange.responses else b""


async def test_a_real_nginx_upstream_never_serves_its_admin_area_to_bob(
        make_stack: object, nginx_upstream: str, browsers: Browsers) -> None:
    upstreams = [{"url": nginx_upstream, **route} for route in ROUTES]
    stack = await make_stack({"upstreams": upstreams})  # type: ignore[operator]
    bob = await session_of(stack, browsers, BOB)
    alice = await session_of(stack, browsers, ALICE)
    # What nginx itself makes of the attacks: several are its admin area.
    direct = {t: await nginx_serves(nginx_upstream, t) for t in CASE + DOTS}
    assert sum(body.startswith(b"admin") for body in direct.values()) >= 8, direct
    served = {}
    for target in CASE + DOTS:
        status, body = await send(stack, target, bob)
        tally("real-upstream", refused=not body.startswith(b"admin"), crashed=status >= 500,
              reached=body.startswith(b"admin"))
        if body.startswith(b"admin"):
            served[target] = body
    assert served == {}
    # Alice is admitted, on every spelling nginx serves as its admin area and that has one
    # reading.
    status, body = await send(stack, "/ADMIN/secret", alice)
    assert (status, body) == (200, b"admin /ADMIN/secret")


async def test_forward_auth_reads_the_original_request_the_same_way(
        shield: ShieldFactory, upstream: Upstream, browsers: Browsers) -> None:
    stack = await shield({"server": {"trusted_proxies": ["127.0.0.1/32"]}}, routes=ROUTES)
    bob = await sign_in(stack, BOB, browsers())

    async def check(name: str, value: str) -> int:
        async with bob.get(stack.url + "/oauth2/auth", headers={name: value}) as resp:
            return resp.status

    assert await check("X-Forwarded-Uri", "/app/x") == 202  # the controls
    assert await check("X-Forwarded-Uri", "/admin/x") == 403
    assert await check("X-Forwarded-Host", "other.local") == 202
    assert await check("X-Forwarded-Host", "admin.local") == 403
    # 403 (not 400): nginx's auth_request turns anything but 2xx/401/403 into a 500.
    answers = {("uri", uri): await check("X-Forwarded-Uri", uri) for uri in CASE + DOTS}
    answers |= {("host", host): await check("X-Forwarded-Host", host.format(port=80))
                for host in HOSTS if "\t" not in host and host.isascii()}
    for (kind, _), status in answers.items():
        tally(f"forward-auth-{kind}-readings", refused=status == 403, crashed=status >= 500)
    assert {key: status for key, status in answers.items() if status != 403} == {}
    assert upstream.seen == []
