"""The whole sign-in flow over real sockets: browser → proxy → mock Entra → proxy → upstream."""

from __future__ import annotations

import io
import json

from tests.conftest import ALICE, HTML, Stack, StackFactory


async def test_login_reaches_upstream_with_identity_headers(stack: Stack) -> None:
    resp = await stack.login(ALICE, path="/some/page?x=1")
    assert resp.status == 200
    assert str(resp.url) == stack.url + "/some/page?x=1"
    body = json.loads(await resp.text())
    headers = {k.lower(): v for k, v in body["headers"].items()}
    assert headers["x-forwarded-user"] == [ALICE]
    assert headers["x-forwarded-email"] == [ALICE]
    assert headers["x-forwarded-tenant-id"] == ["11111111-1111-4111-8111-111111111111"]
    assert len(headers["x-forwarded-groups"][0].split(",")) == 2
    assert "azp_session" not in headers.get("cookie", [""])[0]


async def test_userinfo_and_sign_out(stack: Stack) -> None:
    await stack.login()
    async with stack.client.get(stack.url + "/oauth2/userinfo") as resp:
        assert resp.status == 200
        info = await resp.json()
    assert info["preferred_username"] == ALICE and info["oid"]
    async with stack.client.get(stack.url + "/oauth2/sign_out", headers=HTML) as resp:
        assert resp.status == 200
        assert "signed out" in (await resp.text()).lower()
    async with stack.client.get(stack.url + "/oauth2/userinfo") as resp:
        assert resp.status == 401


async def test_session_and_login_cookie_attributes(make_stack: StackFactory) -> None:
    stack = await make_stack()
    stack.mock.auto_user = ALICE
    async with stack.client.get(stack.url + "/", headers=HTML, allow_redirects=False) as resp:
        login_cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in login_cookie and "SameSite=lax" in login_cookie.replace("Lax", "lax")
    assert "Max-Age=600" in login_cookie and "Path=/" in login_cookie
    async with stack.client.get(resp.headers["Location"], allow_redirects=False) as idp:
        callback = idp.headers["Location"]
    async with stack.client.get(callback, allow_redirects=False) as resp:
        set_cookies = resp.headers.getall("Set-Cookie")
    session = next(c for c in set_cookies if c.startswith("azp_session="))
    assert "HttpOnly" in session and "Max-Age=28800" in session and "Secure" not in session
    assert any(c.startswith("azp_session_login_") and "Max-Age=0" in c for c in set_cookies)
    secure = await make_stack({"server": {"public_url": "https://127.0.0.1:4443"},
                               "session": {"secure": True}})
    async with secure.client.get(secure.url + "/oauth2/start", allow_redirects=False) as resp:
        assert "Secure" in resp.headers["Set-Cookie"]


async def test_ping_and_ready(stack: Stack) -> None:
    async with stack.client.get(stack.url + "/ping") as resp:
        assert resp.status == 200
    async with stack.client.get(stack.url + "/ready") as resp:
        assert resp.status == 200 and (await resp.json())["ready"] is True


async def test_return_to_original_url_and_unsafe_rd_falls_back(stack: Stack) -> None:
    stack.mock.auto_user = ALICE
    async with stack.client.get(stack.url + "/oauth2/start?rd=/deep/link%3Fa%3D1",
                                headers=HTML) as resp:
        assert str(resp.url).startswith(stack.url + "/deep/link")
    browser = stack.new_browser()
    async with browser:
        async with browser.get(stack.url + "/oauth2/start?rd=//evil.example/x",
                               headers=HTML) as resp:
            assert str(resp.url) == stack.url + "/"


async def test_several_tabs_can_sign_in_at_once(stack: Stack) -> None:
    stack.mock.auto_user = ALICE
    starts = []
    for path in ("/tab1", "/tab2", "/tab3"):
        async with stack.client.get(stack.url + path, headers=HTML,
                                    allow_redirects=False) as resp:
            starts.append(resp.headers["Location"])
    callbacks = []
    for location in starts:
        async with stack.client.get(location, allow_redirects=False) as resp:
            callbacks.append(resp.headers["Location"])
    for path, callback in reversed(list(zip(("/tab1", "/tab2", "/tab3"), callbacks,
                                            strict=True))):
        async with stack.client.get(callback) as resp:
            assert resp.status == 200
            assert str(resp.url) == stack.url + path


async def test_sign_out_post_with_huge_body_is_refused_not_buffered(stack: Stack) -> None:
    await stack.login()
    body = b"rd=/" + b"a" * (2 * 1024 * 1024)
    async with stack.client.post(stack.url + "/oauth2/sign_out", data=io.BytesIO(body), headers={
            "Content-Type": "application/x-www-form-urlencoded"}) as resp:
        assert resp.status == 413
    async with stack.client.post(stack.url + "/oauth2/sign_out", data={"rd": "/after"},
                                 allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/after"
    async with stack.client.get(stack.url + "/oauth2/userinfo") as resp:
        assert resp.status == 401
