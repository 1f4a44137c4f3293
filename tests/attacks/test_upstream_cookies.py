"""An app behind the proxy cannot set, fix or wipe the proxy's own cookies (issue 16 item 5).

One upstream's Set-Cookie for `azp_session`, a chunk or a login-state cookie would reach the
browser, and so fix (login CSRF) or end the session every other app shares. The app's own
cookies pass untouched, on both the small-body and the streamed answer path."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.attacks.harness import tally
from tests.conftest import HTML, StackFactory

HOSTILE = [
    "azp_session=forged; Path=/", "AZP_SESSION=forged; Path=/", "Azp_Session_0=x; Path=/",
    "azp_session_1=x", "azp_session_12=x; Max-Age=0", " azp_session =x",
    "azp_session_login_abc=x; Path=/callback", "azp_session=; Max-Age=0; Path=/",
    "azp_session; Path=/", "azp_session; Path=/; Secure", "azp_session=forged==; Path=/",
]
FRIENDLY = ["app=1; Path=/", "azp_sessionx=kept", "session=app-own; HttpOnly", "zazp_session=1"]


def is_proxys(name: str) -> bool:
    return name.lower() == "azp_session" or name.lower().startswith("azp_session_")


@pytest.fixture
async def cookie_setting_upstream() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/plain":
            return web.Response(text="no cookies here")
        headers = [("Set-Cookie", v) for v in HOSTILE + FRIENDLY]
        if request.path == "/big":  # past the proxy's one-read limit: the streamed path
            response = web.StreamResponse(headers=headers)
            response.content_length = 200_000
            await response.prepare(request)
            await response.write(b"x" * 200_000)
            return response
        return web.Response(text="small", headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.mark.parametrize("store", ["cookie", "memory"])
async def test_upstream_cannot_set_the_proxys_cookies(make_stack: StackFactory,
                                                      cookie_setting_upstream: str,
                                                      store: str) -> None:
    stack = await make_stack({"session": {"store": store},
                              "upstreams": [{"path": "/", "url": cookie_setting_upstream,
                                             "public": ["^/public/"]}]})
    await stack.login(path="/plain")
    session_before = {c.key: c.value for c in stack.client.cookie_jar}
    assert "azp_session" in session_before
    for path in ("/small", "/big", "/public/small", "/public/big"):
        async with stack.client.get(stack.url + path, headers=HTML) as resp:
            assert resp.status == 200, path
            await resp.read()
            got = resp.headers.getall("Set-Cookie", [])
        for value in HOSTILE:
            tally("upstream-set-cookie", refused=value not in got, crashed=False)
        assert sorted(got) == sorted(FRIENDLY), path
    jar = {c.key: c.value for c in stack.client.cookie_jar}
    assert {k: v for k, v in jar.items() if is_proxys(k)} == \
        {k: v for k, v in session_before.items() if is_proxys(k)}
    async with stack.client.get(stack.url + "/oauth2/userinfo") as resp:
        assert resp.status == 200  # the session survived every hostile answer
