"""/oauth2/auth believes the original request's URI and host only from trusted proxies, and
never lets an ambiguous original URI open a public rule (SPEC §5, forward-auth)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.attacks.conftest import ShieldFactory, sign_in
from tests.attacks.harness import Upstream, tally
from tests.caddy_front import caddy
from tests.conftest import Browsers, Stack, free_port, port_of
from tests.support.fronts import nginx

BOB = "bob@contoso.example"
FAMILY = "forward-auth-spoofing"
ROUTES = [{"path": "/", "public": ["^/healthz$", "^/public/"]},
          {"path": "/admin", "access": {"roles": ["Admin"]}},
          {"path": "/", "host": "open.example", "public": ["^/"]}]


async def check(stack: Stack, client: aiohttp.ClientSession | None = None,
                headers: list[tuple[str, str]] | None = None) -> aiohttp.ClientResponse:
    own = client is None
    session = client or aiohttp.ClientSession()
    try:
        async with session.get(stack.url + "/oauth2/auth", headers=headers or []) as resp:
            await resp.read()
            return resp
    finally:
        if own:
            await session.close()


# The test client connects from 127.0.0.1; these make it look like a trusted proxy's peer.
LOOK_TRUSTED = [("X-Forwarded-For", "10.9.9.9"), ("X-Real-IP", "10.9.9.9"),
                ("Forwarded", "for=10.9.9.9;proto=https"), ("True-Client-IP", "10.9.9.9"),
                ("X-Client-IP", "10.9.9.9"), ("CF-Connecting-IP", "10.9.9.9")]
ORIGINAL = [("X-Forwarded-Uri", "/healthz"), ("X-Original-URL", "/healthz"),
            ("X-Original-URI", "/healthz"), ("X-Rewrite-URL", "/healthz"),
            ("X-Forwarded-Host", "open.example"), ("X-Forwarded-Uri", "http://open.example/x"),
            ("X_Forwarded_Uri", "/healthz"), ("x-forwarded-uri", "/public/x")]


async def test_untrusted_peers_cannot_choose_the_original_request(
        shield: ShieldFactory, upstream: Upstream) -> None:
    stack = await shield({"server": {"trusted_proxies": ["10.0.0.0/8"]}}, routes=ROUTES)
    opened = []
    for header in ORIGINAL:
        for disguise in ([], LOOK_TRUSTED):
            resp = await check(stack, headers=[*disguise, header])
            tally(FAMILY, refused=resp.status == 401, crashed=resp.status >= 500)
            if resp.status != 401:
                opened.append((header, bool(disguise), resp.status))
    assert opened == []
    assert upstream.seen == []


async def test_identity_in_the_answer_is_computed_not_echoed(
        shield: ShieldFactory, browsers: Browsers) -> None:
    stack = await shield(routes=ROUTES)
    bob = await sign_in(stack, BOB, browsers())
    spoof = [("X-Auth-Request-User", "admin@evil"), ("X-Auth-Request-Email", "admin@evil"),
             ("X-Auth-Request-Groups", "admins"), ("X-Forwarded-User", "admin@evil"),
             ("X_Auth_Request_User", "admin@evil"), ("X-Auth-Request-Preferred-Username", "a")]
    resp = await check(stack, bob, spoof)
    tally(FAMILY, refused="admin@evil" not in str(resp.headers), crashed=resp.status >= 500)
    assert resp.status == 202
    assert resp.headers["X-Auth-Request-User"] == BOB
    assert resp.headers.getall("X-Forwarded-User") == [BOB]
    assert "admin@evil" not in str(resp.headers) and "admins" not in str(resp.headers)
    anonymous = await check(stack, headers=spoof)
    assert anonymous.status == 401 and "admin@evil" not in str(anonymous.headers)


AMBIGUOUS_URIS = ["/healthz/../admin/x", "/healthz%2f..%2fadmin", "/admin/x?/healthz",
                  "/admin/x#/healthz", "/healthz;/../admin/x", "//healthz", "/%2e%2e/healthz",
                  "/public/../admin/x", "/public/%2e%2e/admin/x", "/healthz%23", "/healthz%00",
                  "/public%2fx"]


async def test_trusted_proxy_ambiguous_uris_open_nothing(shield: ShieldFactory,
                                                         upstream: Upstream) -> None:
    stack = await shield({"server": {"trusted_proxies": ["127.0.0.1/32"]}}, routes=ROUTES)
    assert (await check(stack, headers=[("X-Forwarded-Uri", "/healthz")])).status == 202
    opened = {}
    for uri in AMBIGUOUS_URIS:
        for header in ("X-Forwarded-Uri", "X-Original-URL"):
            resp = await check(stack, headers=[(header, uri)])
            tally(FAMILY, refused=resp.status == 401, crashed=resp.status >= 500)
            if resp.status != 401:
                opened[f"{header}: {uri}"] = resp.status
    assert opened == {}
    assert upstream.seen == []


@pytest.mark.parametrize("headers", [
    [("X-Original-URL", "/admin/x"), ("X-Forwarded-Uri", "/healthz")],
    [("X-Forwarded-Uri", "/healthz"), ("X-Original-URL", "/admin/x")],
    [("X-Forwarded-Uri", "/healthz"), ("X-Forwarded-Uri", "/admin/x")],
    [("X-Original-URL", "/healthz"), ("X-Original-URL", "/admin/x")],
], ids=["front-sets-original-url", "client-first", "two-forwarded-uris", "two-original-urls"])
async def test_conflicting_original_uris_from_a_trusted_proxy_open_nothing(
        shield: ShieldFactory, upstream: Upstream, headers: list[tuple[str, str]]) -> None:
    # A front that sets X-Original-URL (ingress-nginx does) passes the client's own
    # X-Forwarded-Uri through: when the two disagree, the proxy cannot know which one the
    # front wrote, so it must not take the public one.
    stack = await shield({"server": {"trusted_proxies": ["127.0.0.1/32"]}}, routes=ROUTES)
    resp = await check(stack, headers=headers)
    tally(FAMILY, refused=resp.status in (400, 401), crashed=resp.status >= 500)
    assert resp.status in (400, 401), resp.status
    assert upstream.seen == []


async def test_trusted_proxy_route_policy_follows_path_parameters(
        shield: ShieldFactory, browsers: Browsers) -> None:
    # nginx passes $request_uri verbatim: a Java upstream reads /admin;x/y as /admin/y.
    stack = await shield({"server": {"trusted_proxies": ["127.0.0.1/32"]}}, routes=ROUTES)
    bob = await sign_in(stack, BOB, browsers())
    assert (await check(stack, bob, [("X-Forwarded-Uri", "/admin/y")])).status == 403
    resp = await check(stack, bob, [("X-Forwarded-Uri", "/admin;x/y")])
    tally(FAMILY, refused=resp.status in (400, 403), crashed=resp.status >= 500)
    assert resp.status in (400, 403), resp.status


# What ingress-nginx's auth-url annotation generates: the original URL goes in
# X-Original-URL; every other header of the client's request is passed through.
INGRESS_NGINX_SERVER = """
    location = /_external-auth {{
      internal;
      proxy_pass http://127.0.0.1:{proxy_port}/oauth2/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
    }}
    location / {{
      auth_request /_external-auth;
      proxy_pass {upstream};
    }}
"""


async def test_behind_ingress_nginx_a_client_x_forwarded_uri_opens_nothing(
        shield: ShieldFactory, upstream: Upstream, tmp_path: Path) -> None:
    stack = await shield({"server": {"trusted_proxies": ["127.0.0.1/32"]}}, routes=ROUTES)
    server = INGRESS_NGINX_SERVER.format(proxy_port=port_of(stack), upstream=upstream.url)
    async with nginx(tmp_path, server) as url, aiohttp.ClientSession() as client:
        async with client.get(url + "/healthz") as resp:
            assert resp.status == 200  # the control: public through nginx
        async with client.get(url + "/admin/x") as resp:
            assert resp.status == 401  # the control: nginx asks the proxy
        upstream.seen.clear()
        async with client.get(url + "/admin/x",
                              headers={"X-Forwarded-Uri": "/healthz"}) as resp:
            status = resp.status
    tally(FAMILY, refused=status == 401, crashed=status >= 500)
    assert status == 401, (status, upstream.paths())
    assert upstream.seen == []


# --- through the shipped Caddy recipe (deploy/caddy/Caddyfile), a real Caddy ----------------

# Caddy reaches the proxy from 127.0.0.1 (trusted, as the recipe says); this client, going
# straight to the proxy from another loopback address, is not.
UNTRUSTED = "127.0.0.2"
AUTH_PATHS = ["/oauth2/auth", "/oauth2/auth?x=1", "/OAUTH2/AUTH", "/oauth2/%61uth",
              "/oauth2/auth/", "/oauth2//auth", "/oauth2/./auth", "/callback/../oauth2/auth"]


@pytest.fixture
async def caddy_front(shield: ShieldFactory, upstream: Upstream,
                      tmp_path: Path) -> AsyncIterator[tuple[str, Stack]]:
    port = free_port()
    stack = await shield({"server": {"public_url": f"http://127.0.0.1:{port}",
                                     "trusted_proxies": ["127.0.0.1/32"]}}, routes=ROUTES)
    async with caddy(tmp_path, port, port_of(stack), upstream.url) as url:
        yield url, stack


async def test_behind_caddy_a_client_cannot_choose_the_original_request(
        caddy_front: tuple[str, Stack], upstream: Upstream) -> None:
    url, _ = caddy_front
    async with aiohttp.ClientSession() as client:
        async with client.get(url + "/healthz") as resp:
            assert resp.status == 200 and upstream.paths() == ["/healthz"]  # the control
        opened = []
        for header in [*ORIGINAL, ("Host", "open.example")]:
            for disguise in ([], LOOK_TRUSTED):
                upstream.seen.clear()
                async with client.get(url + "/admin/x", headers=[*disguise, header],
                                      allow_redirects=False) as resp:
                    status = resp.status
                tally(FAMILY, refused=not upstream.seen, crashed=status >= 500)
                if upstream.seen or status >= 500:
                    opened.append((header, bool(disguise), status, upstream.paths()))
    assert opened == []


async def test_behind_caddy_a_client_cannot_ask_the_auth_endpoint_itself(
        caddy_front: tuple[str, Stack], upstream: Upstream) -> None:
    # Through Caddy the proxy sees a trusted peer: a client's own /oauth2/auth request with
    # its own X-Forwarded-Uri would be believed, so the recipe never routes one there.
    url, stack = caddy_front
    answered = {}
    async with aiohttp.ClientSession() as client:
        for path in AUTH_PATHS:
            async with client.get(url + path, headers={"X-Forwarded-Uri": "/healthz"},
                                  allow_redirects=False) as resp:
                tally(FAMILY, refused=resp.status != 202, crashed=resp.status >= 500)
                if resp.status < 300 or resp.status >= 500:
                    answered[path] = resp.status
    assert answered == {}
    assert upstream.seen == []
    # The control: the same request straight to the proxy from Caddy's address is
    # believed, from an address outside trusted_proxies it is not.
    async with aiohttp.ClientSession() as client:
        async with client.get(stack.url + "/oauth2/auth",
                              headers={"X-Forwarded-Uri": "/healthz"}) as resp:
            assert resp.status == 202
    direct = aiohttp.TCPConnector(local_addr=(UNTRUSTED, 0))
    async with aiohttp.ClientSession(connector=direct) as client:
        async with client.get(stack.url + "/oauth2/auth",
                              headers={"X-Forwarded-Uri": "/healthz"}) as resp:
            assert resp.status == 401


async def test_behind_caddy_a_signed_in_user_cannot_borrow_a_laxer_route(
        caddy_front: tuple[str, Stack], upstream: Upstream, browsers: Browsers) -> None:
    url, stack = caddy_front
    bob = browsers()
    stack.mock.auto_user = BOB
    async with bob.get(url + "/app") as resp:  # signs in through Caddy
        assert resp.status == 200 and upstream.paths()[-1] == "/app"
    opened = {}
    for header in [("X-Forwarded-Uri", "/app"), ("X-Original-URL", "/app"),
                   ("X-Forwarded-Uri", "/healthz"), ("X-Forwarded-Host", "open.example"),
                   ("X-Original-URL", "http://open.example/")]:
        upstream.seen.clear()
        async with bob.get(url + "/admin/x", headers=[header], allow_redirects=False) as resp:
            status = resp.status
        tally(FAMILY, refused=not upstream.seen, crashed=status >= 500)
        if upstream.seen or status not in (302, 403):
            opened[header] = (status, upstream.paths())
    assert opened == {}
