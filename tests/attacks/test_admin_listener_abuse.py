"""The admin listener (`/admin/sessions`) attacked from a web page, over real sockets: a browser
on the proxy's host is a loopback peer, so without `admin_token` any site it opens could post
a form that revokes every session (cross-site request forgery), or rebind its own host name
to 127.0.0.1 and read the list of who is signed in (DNS rebinding)."""

from __future__ import annotations

from typing import Any

import pytest
from yarl import URL

from tests.attacks.harness import tally
from tests.conftest import ALICE, Browsers, StackFactory
from tests.flows.test_admin_listener import TOKEN, call, pair, signed_in, userinfo

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# What browsers send with a page's form post or fetch (no page can leave these out).
FROM_PAGES = [
    {"Origin": "https://evil.example", **FORM},
    {"Origin": "null", **FORM},  # a sandboxed iframe or a data: page
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", **FORM},
    {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-site", **FORM},
]


@pytest.mark.parametrize("headers", FROM_PAGES)
async def test_a_web_page_cannot_revoke_through_the_loopback_listener(
        make_stack: StackFactory, redis_url: str, browsers: Browsers,
        headers: dict[str, str]) -> None:
    p = await pair(make_stack, redis_url)
    alice = await signed_in(p, browsers, ALICE)
    status, body, _ = await call("POST", p.admin + "/admin/sessions/revoke", data="all=true",
                                 headers=headers)
    alive = await userinfo(p.b, alice) == 200
    tally("admin-csrf", refused=status == 403 and alive, crashed=status >= 500,
          reached=not alive)
    assert status == 403 and body["error"] == "from-web-page" and body["request_id"]
    assert alive


async def list_with_host(make_stack: StackFactory, redis_url: str, browsers: Browsers,
                         host: str, **headers: str) -> tuple[int, Any]:
    """GET /admin/sessions with Alice signed in, sent with this Host (`{port}`: the admin's)."""
    p = await pair(make_stack, redis_url)
    await signed_in(p, browsers, ALICE)
    status, body, _ = await call("GET", p.admin + "/admin/sessions",
                                 headers={"Host": host.format(port=URL(p.admin).port), **headers})
    return status, body


@pytest.mark.parametrize("host", ["rebound.evil.example", "rebound.evil.example:{port}",
                                  "127.0.0.1.nip.io:{port}", "localhost.evil.example",
                                  "[::2]:{port}", "10.0.0.1"])
async def test_a_rebound_host_name_cannot_read_the_sessions(
        make_stack: StackFactory, redis_url: str, browsers: Browsers, host: str) -> None:
    status, body = await list_with_host(make_stack, redis_url, browsers, host)
    leaked = body is not None and "sessions" in body
    tally("admin-dns-rebinding", refused=status == 403, crashed=status >= 500, reached=leaked)
    assert status == 403 and not leaked and body["error"] == "host-not-loopback"


@pytest.mark.parametrize("host", ["localhost:{port}", "LOCALHOST", "127.0.0.1:{port}",
                                  "127.0.0.2", "[::1]:{port}", "[::ffff:127.0.0.1]:{port}"])
async def test_loopback_names_and_scripts_still_work(
        make_stack: StackFactory, redis_url: str, browsers: Browsers, host: str) -> None:
    status, body = await list_with_host(make_stack, redis_url, browsers, host,
                                        **{"Sec-Fetch-Site": "none"})  # typed in the bar
    assert status == 200 and [s["user"] for s in body["sessions"]] == [ALICE]


async def test_with_a_token_a_page_is_refused_and_any_host_name_is_fine(
        make_stack: StackFactory, redis_url: str, browsers: Browsers) -> None:
    p = await pair(make_stack, redis_url, admin_token=TOKEN)
    alice = await signed_in(p, browsers, ALICE)
    auth: dict[str, Any] = {"Authorization": f"Bearer {TOKEN}"}
    status, _, _ = await call("POST", p.admin + "/admin/sessions/revoke", data="all=true",
                              headers={**auth, **FROM_PAGES[0]})
    assert status == 403 and await userinfo(p.b, alice) == 200
    status, body, _ = await call("POST", p.admin + "/admin/sessions/revoke", data="all=true",
                                 headers={**auth, **FORM, "Host": "proxy.internal:9090"})
    assert status == 200 and body["revoked"] == 1 and await userinfo(p.b, alice) == 401


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP",
                                    "X-Forwarded-Host"])
async def test_a_request_relayed_by_a_local_reverse_proxy_is_not_a_loopback_caller(
        make_stack: StackFactory, redis_url: str, browsers: Browsers, header: str) -> None:
    # nginx on the same host relaying the internet to the listener: the peer is 127.0.0.1.
    p = await pair(make_stack, redis_url)
    alice = await signed_in(p, browsers, ALICE)
    value = "for=203.0.113.5" if header == "Forwarded" else "203.0.113.5"
    status, body, _ = await call("POST", p.admin + "/admin/sessions/revoke",
                                 json={"all": True}, headers={header: value})
    alive = await userinfo(p.b, alice) == 200
    tally("admin-forwarded", refused=status == 403 and alive, crashed=status >= 500,
          reached=not alive)
    assert status == 403 and body["error"] == "forwarded" and alive


async def test_the_admin_token_is_never_logged_nor_echoed(
        make_stack: StackFactory, redis_url: str, browsers: Browsers,
        caplog: pytest.LogCaptureFixture) -> None:
    p = await pair(make_stack, redis_url, admin_token=TOKEN)
    await signed_in(p, browsers, ALICE)
    answers = []
    for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}",
                   f"Bearer {TOKEN}"):
        status, body, _ = await call("GET", p.admin + "/admin/sessions",
                                     headers={"Authorization": header})
        answers.append((status, str(body)))
    assert [status for status, _ in answers] == [401, 401, 401, 200]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__.get('fields', '')}"
                       for r in caplog.records)
    leaked = TOKEN[:-1] in logged or any(TOKEN[:-1] in body for _, body in answers)
    tally("admin-token-leak", refused=not leaked, crashed=False, reached=leaked)
    assert not leaked
