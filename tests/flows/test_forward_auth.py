"""/oauth2/auth for nginx auth_request, Traefik forwardAuth and Caddy forward_auth.

The nginx test runs the real nginx (Debian package, installed by `make test`) in front of a
real upstream, with the proxy answering its auth_request subrequests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.mock_entra import DEFAULT_CLIENT_ID
from proxy.mock_entra.users import ADMINS_GROUP_ID, ENGINEERING_GROUP_ID
from tests.conftest import ALICE, HTML, Stack, StackFactory, free_port, port_of
from tests.support.fronts import nginx

TRUSTED = "127.0.0.2"  # nginx talks to the proxy from here; the test client uses 127.0.0.1


async def auth(stack: Stack, client: aiohttp.ClientSession | None = None, /,
               **headers: str) -> aiohttp.ClientResponse:
    async with (client or stack.client).get(stack.url + "/oauth2/auth",
                                            headers=headers) as resp:
        await resp.read()
        return resp


@pytest.fixture
async def gated(make_stack: StackFactory, upstream_url: str) -> Stack:
    return await make_stack({
        "server": {"trusted_proxies": ["127.0.0.1/32"]},
        "upstreams": [
            {"path": "/", "url": upstream_url, "public": ["^/healthz$"]},
            {"path": "/admin", "url": upstream_url, "access": {"roles": ["Admin"]}},
        ]})


async def test_signed_out_is_401_and_signed_in_is_202_with_headers(gated: Stack) -> None:
    assert (await auth(gated)).status == 401
    await gated.login()
    resp = await auth(gated)
    assert resp.status == 202
    assert resp.headers["X-Auth-Request-User"] == ALICE
    assert resp.headers["X-Auth-Request-Email"] == ALICE
    assert len(resp.headers["X-Auth-Request-Groups"].split(",")) == 2
    assert resp.headers["X-Auth-Request-Preferred-Username"] == ALICE
    assert resp.headers["X-Forwarded-User"] == ALICE


async def test_route_policy_follows_the_forwarded_uri_from_trusted_callers(
        gated: Stack) -> None:
    await gated.login("bob@contoso.example")  # no Admin role
    assert (await auth(gated, **{"X-Forwarded-Uri": "/app"})).status == 202
    assert (await auth(gated, **{"X-Forwarded-Uri": "/admin/x"})).status == 403
    assert (await auth(gated, **{"X-Original-URL": "/admin/x"})).status == 403
    assert (await auth(gated, **{"X-Forwarded-Uri": "/admin/../admin/x"})).status == 403


async def test_public_path_needs_no_session_only_from_trusted_callers(
        gated: Stack, make_stack: StackFactory, upstream_url: str) -> None:
    assert (await auth(gated, **{"X-Forwarded-Uri": "/healthz"})).status == 202
    assert (await auth(gated, **{"X-Forwarded-Uri": "/healthz?x=/admin"})).status == 202
    assert (await auth(gated, **{"X-Forwarded-Uri": "/admin?/healthz"})).status == 401
    untrusted = await make_stack({"upstreams": [
        {"path": "/", "url": upstream_url, "public": ["^/healthz$"]}]})
    for header in ("X-Forwarded-Uri", "X-Original-URL"):  # spoofed: ignored, nothing opens
        assert (await auth(untrusted, **{header: "/healthz"})).status == 401


async def test_bearer_tokens_count_for_forward_auth_too(make_stack: StackFactory) -> None:
    stack = await make_stack({"api": {"accept_bearer": True, "audiences": ["api://x"],
                                      "allowed_client_ids": [DEFAULT_CLIENT_ID]}})
    resp = await auth(stack, Authorization="Bearer not.a.token")
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


# The locations of nginx's auth_request set-up (docs/deployment's nginx example, for tests).
NGINX_SERVER = """
    proxy_bind {trusted};
    location /oauth2/ {{
      proxy_pass http://127.0.0.1:{proxy_port};
      proxy_set_header Host $http_host;
    }}
    location /callback/ {{
      proxy_pass http://127.0.0.1:{proxy_port};
      proxy_set_header Host $http_host;
    }}
    location = /oauth2/auth {{
      internal;
      proxy_pass http://127.0.0.1:{proxy_port};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Uri $request_uri;
      proxy_set_header X-Forwarded-Host $http_host;
    }}
    location / {{
      auth_request /oauth2/auth;
      auth_request_set $user $upstream_http_x_auth_request_user;
      auth_request_set $email $upstream_http_x_auth_request_email;
      auth_request_set $groups $upstream_http_x_auth_request_groups;
      error_page 401 = @signin;
      proxy_set_header X-User $user;
      proxy_set_header X-Email $email;
      proxy_set_header X-Groups $groups;
      proxy_pass {upstream};
    }}
    location @signin {{
      return 302 /oauth2/start?rd=$request_uri;
    }}
"""


@pytest.fixture
async def nginx_front(tmp_path: Path, make_stack: StackFactory,
                      upstream_url: str) -> AsyncIterator[dict[str, Any]]:
    # The proxy's public URL is nginx's: reserve nginx's port first, then start both.
    port = free_port()
    stack = await make_stack({
        "server": {"public_url": f"http://127.0.0.1:{port}", "trusted_proxies": [TRUSTED]},
        "upstreams": [{"path": "/", "url": upstream_url, "public": ["^/healthz$"]},
                      {"path": "/admin", "url": upstream_url, "access": {"roles": ["Nope"]}}]})
    server = NGINX_SERVER.format(proxy_port=port_of(stack), upstream=upstream_url,
                                 trusted=TRUSTED)
    async with nginx(tmp_path, server, port=port) as url:
        yield {"url": url, "stack": stack}


async def test_real_nginx_auth_request_in_front_of_an_upstream(
        nginx_front: dict[str, Any]) -> None:
    url, stack = nginx_front["url"], nginx_front["stack"]
    stack.mock.auto_user = ALICE
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(url + "/app/page?q=1", headers=HTML) as resp:
            assert resp.status == 200
            assert str(resp.url) == url + "/app/page?q=1"
            body = await resp.json()
        headers = {k.lower(): v for k, v in body["headers"].items()}
        assert headers["x-user"] == [ALICE] and headers["x-email"] == [ALICE]
        assert len(headers["x-groups"][0].split(",")) == 2
        async with browser.get(url + "/admin/x") as resp:
            assert resp.status == 403  # nginx passes the proxy's 403 on
        async with browser.get(url + "/healthz") as resp:
            assert resp.status == 200
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(url + "/app", headers={"X-Forwarded-Uri": "/healthz"},
                                 allow_redirects=False) as resp:
            assert resp.status == 302  # the client's own X-Forwarded-Uri opens nothing
            assert resp.headers["Location"].endswith("/oauth2/start?rd=/app")


async def test_forward_auth_answer_carries_the_assertion_for_the_route(gated: Stack) -> None:
    await gated.login()
    resp = await auth(gated, **{"X-Forwarded-Uri": "/app"})
    assert resp.status == 202 and resp.headers["X-Auth-Assertion"].count(".") == 2


async def ask(stack: Stack, query: str, client: aiohttp.ClientSession | None = None,
              **headers: str) -> int:
    async with (client or stack.client).get(stack.url + "/oauth2/auth?" + query,
                                            headers=headers) as resp:
        return resp.status


async def test_the_ingress_may_ask_for_groups_and_emails_per_location(
        gated: Stack) -> None:
    """oauth2-proxy's `/oauth2/auth?allowed_groups=...&allowed_emails=...`: checked on top of
    the route's policy, never instead of it."""
    await gated.login()  # alice: admins + engineering, role Admin, a verified email
    assert await ask(gated, f"allowed_groups={ADMINS_GROUP_ID}") == 202
    assert await ask(gated, f"allowed_groups=nope,{ENGINEERING_GROUP_ID}") == 202
    assert await ask(gated, "allowed_groups=11111111-1111-4111-8111-111111111111") == 403
    assert await ask(gated, f"allowed_emails={ALICE}") == 202
    assert await ask(gated, "allowed_emails=bob@contoso.example") == 403
    assert await ask(gated, f"allowed_emails={ALICE}&allowed_groups=nope") == 403  # AND
    gated.mock.users["bob@contoso.example"].groups = [ENGINEERING_GROUP_ID]
    bob = gated.new_browser()
    async with bob:
        await gated.login("bob@contoso.example", client=bob)
        asked = f"allowed_groups={ENGINEERING_GROUP_ID}"
        assert await ask(gated, asked, bob, **{"X-Forwarded-Uri": "/x"}) == 202
        # The ingress cannot open what the route closes: /admin needs the Admin role.
        assert await ask(gated, asked, bob, **{"X-Forwarded-Uri": "/admin/x"}) == 403
    # A public path asked for a group needs a signed-in member, not nobody.
    anonymous = gated.new_browser()
    async with anonymous:
        assert await ask(gated, "", anonymous, **{"X-Forwarded-Uri": "/healthz"}) == 202
        assert await ask(gated, f"allowed_groups={ADMINS_GROUP_ID}", anonymous,
                         **{"X-Forwarded-Uri": "/healthz"}) == 401
