"""The whole sign-in flow over real sockets: browser → proxy → mock Entra → proxy → upstream."""

from __future__ import annotations

import json

from tests.conftest import ALICE, HTML, Stack


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
