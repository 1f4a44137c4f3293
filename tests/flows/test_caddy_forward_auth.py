"""The shipped Caddy recipe (deploy/caddy/Caddyfile) runs for real: Caddy's forward_auth in
front of a real upstream, the proxy answering /oauth2/auth, the mock Entra ID signing in.
Spoofing through Caddy is in tests/attacks/test_forward_auth_spoofing.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.caddy_front import caddy
from tests.conftest import ALICE, HTML, Stack, StackFactory, free_port

BOB = "bob@contoso.example"  # no Admin role


@asynccontextmanager
async def caddy_front(tmp_path: Path, make_stack: StackFactory, upstream_url: str,
                      **extra: Any) -> AsyncIterator[tuple[str, Stack]]:
    port = free_port()
    # proxy.toml as the recipe's header comment says, with Caddy's URL as the public one.
    stack = await make_stack({
        "server": {"public_url": f"http://127.0.0.1:{port}",
                   "trusted_proxies": ["127.0.0.1/32"]},
        "upstreams": [{"path": "/", "url": upstream_url, "public": ["^/healthz$"]},
                      {"path": "/admin", "url": upstream_url, "access": {"roles": ["Admin"]}}],
        **extra})
    async with caddy(tmp_path, port, int(URL(stack.url).port or 0), upstream_url) as url:
        yield url, stack


@pytest.fixture
async def front(tmp_path: Path, make_stack: StackFactory,
                upstream_url: str) -> AsyncIterator[tuple[str, Stack]]:
    async with caddy_front(tmp_path, make_stack, upstream_url) as pair:
        yield pair


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def upstream_saw(resp: aiohttp.ClientResponse) -> dict[str, list[str]]:
    assert resp.status == 200, (resp.status, await resp.text())
    body = await resp.json()
    assert "headers" in body, body  # the echo upstream answered, not the proxy
    return {k.lower(): v for k, v in body["headers"].items()}


async def test_signed_out_is_sent_to_sign_in_through_caddy(
        front: tuple[str, Stack]) -> None:
    url, _ = front
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(url + "/app/page?q=1", allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/oauth2/start?rd=/app/page?q=1"
        async with anonymous.get(url + "/admin/x", allow_redirects=False) as resp:
            assert resp.status == 302  # a route policy needs a user first
            assert resp.headers["Location"] == "/oauth2/start?rd=/admin/x"
        async with anonymous.get(url + "/healthz") as resp:
            saw = await upstream_saw(resp)  # public: Caddy's X-Forwarded-Uri is believed
            assert "x-auth-request-user" not in saw


async def test_sign_in_through_caddy_reaches_the_upstream_with_identity_headers(
        front: tuple[str, Stack]) -> None:
    url, stack = front
    stack.mock.auto_user = ALICE
    async with browser() as alice:
        async with alice.get(url + "/app/page?q=1", headers=HTML) as resp:
            # Every hop of the flow went through Caddy and ended where it started.
            hops = [URL(str(r.url)) for r in resp.history]
            ours = [h.path for h in hops if h.port == URL(url).port]
            assert ours == ["/app/page", "/oauth2/start", "/callback/azuread"], hops
            assert any(URL(stack.idp).port == h.port for h in hops), "via the mock Entra"
            assert str(resp.url) == url + "/app/page?q=1"
            saw = await upstream_saw(resp)
        assert saw["x-auth-request-user"] == [ALICE]
        assert saw["x-auth-request-email"] == [ALICE]
        assert saw["x-auth-request-preferred-username"] == [ALICE]
        assert len(saw["x-auth-request-groups"]) == 1
        assert len(saw["x-auth-request-groups"][0].split(",")) == 2
        async with alice.get(url + "/admin/x") as resp:
            assert (await upstream_saw(resp))["x-auth-request-user"] == [ALICE]  # has Admin


async def test_route_policy_gives_403_through_caddy(front: tuple[str, Stack]) -> None:
    url, stack = front
    stack.mock.auto_user = BOB
    async with browser() as bob:
        async with bob.get(url + "/app", headers=HTML) as resp:
            assert (await upstream_saw(resp))["x-auth-request-user"] == [BOB]
        for path in ("/admin", "/admin/x?q=1", "/admin/../admin/x"):
            async with bob.get(url + path, headers=HTML, allow_redirects=False) as resp:
                # The proxy's own 403 page, passed on as is: not a redirect, not the app.
                assert resp.status == 403, (path, resp.status)
                assert "request id" in (await resp.text()).lower()


async def test_client_identity_headers_are_replaced_not_passed(
        front: tuple[str, Stack]) -> None:
    url, stack = front
    stack.mock.auto_user = BOB
    spoof = {"X-Auth-Request-User": "alice@contoso.example",
             "X-Auth-Request-Email": "admin@evil", "X-Auth-Request-Groups": "admins",
             "X-Auth-Request-Preferred-Username": "admin@evil",
             "X-Auth-Request-Groups-Overflow": "admin@evil"}
    async with browser() as bob:
        async with bob.get(url + "/app", headers={**HTML, **spoof}) as resp:
            saw = await upstream_saw(resp)
    assert saw["x-auth-request-user"] == [BOB]
    assert saw["x-auth-request-preferred-username"] == [BOB]
    # Bob has no email and no groups, so the proxy's answer has no such header for
    # copy_headers to set: only the recipe's own removal keeps the client's copies out.
    assert saw.get("x-auth-request-email", []) in ([], [""]), saw
    assert saw.get("x-auth-request-groups", []) in ([], [""]), saw
    assert "admins" not in str(saw) and "admin@evil" not in str(saw)
    async with aiohttp.ClientSession() as anonymous:  # and signed out, nothing gets through
        async with anonymous.get(url + "/app", headers=spoof, allow_redirects=False) as resp:
            assert resp.status == 302


async def test_a_1000_group_user_is_marked_through_caddy(
        tmp_path: Path, make_stack: StackFactory, upstream_url: str) -> None:
    """Gina's groups do not fit one line of /oauth2/auth's answer: the recipe passes on the
    marker that says so (docs/identity-headers.md), so the app never reads "no groups"."""
    async with caddy_front(tmp_path, make_stack, upstream_url,
                           session={"store": "memory"}) as (url, stack):
        stack.mock.auto_user = "gina@contoso.example"
        async with browser() as gina, gina.get(url + "/app", headers=HTML) as resp:
            saw = await upstream_saw(resp)
    assert saw["x-auth-request-groups-overflow"] == ["true"]
    assert saw.get("x-auth-request-groups", []) in ([], [""]), saw
    assert saw["x-auth-request-user"] == ["gina@contoso.example"]


async def test_underscore_spellings_of_the_answer_headers_are_removed(
        front: tuple[str, Stack]) -> None:
    """Caddy passes `X_Auth_Request_Groups` on as it is, and CGI/WSGI/PHP servers read it as
    X-Auth-Request-Groups: a user the answer has no groups for (Bob), or one whose groups were
    left out, would otherwise bring their own (review2 finding 5)."""
    url, stack = front
    stack.mock.auto_user = BOB
    spoof = [("X_Auth_Request_Groups", "admins"), ("X_Auth_Request_Email", "admin@evil"),
             ("x_auth_request_user", "admin@evil"), ("X-Auth_Request-Groups-Overflow", "x"),
             ("X_AUTH_REQUEST_PREFERRED_USERNAME", "admin@evil")]
    async with browser() as bob:
        async with bob.get(url + "/app", headers=[*HTML.items(), *spoof]) as resp:
            saw = await upstream_saw(resp)
    assert saw["x-auth-request-user"] == [BOB]
    smuggled = {k: v for k, v in saw.items() if "_" in k and "auth" in k}
    assert smuggled == {}, smuggled
    assert "admins" not in str(saw) and "admin@evil" not in str(saw)
