"""A token endpoint that redirects gets no second request: aiohttp follows a 307/308 with the
same form, which would hand the client secret (or certificate assertion), the authorization
code and the PKCE verifier to any host, past the check that the discovery document's
endpoints live on the configured cloud (review2 finding 1). Nor does the key set: a
redirected JWKS would verify ID tokens with keys from anywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from proxy.config_load import from_dict
from proxy.doctor import run_checks
from proxy.mock_entra import DEFAULT_CLIENT_SECRET
from tests.attacks.harness import tally
from tests.conftest import Browsers, Stack, StackFactory
from tests.flows.test_login_security import sign_in
from tests.test_doctor import config_dict

FAMILY = "token-redirect"


class Thief:
    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.url = ""

    async def take(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.text())
        return web.json_response({"access_token": "x", "id_token": "x", "token_type": "Bearer"})


@pytest.fixture
async def thief() -> AsyncIterator[Thief]:
    found = Thief()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", found.take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}/steal"
    yield found
    await runner.cleanup()


async def test_the_callback_does_not_follow_a_token_endpoint_redirect(
        make_stack: StackFactory, browsers: Browsers, thief: Thief) -> None:
    stack: Stack = await make_stack()
    stack.mock.faults.token_redirect = thief.url
    hop = await sign_in(stack, browsers())
    tally(FAMILY, refused=not thief.bodies, crashed=hop.status == 500)
    assert thief.bodies == []
    assert hop.status == 502 and "redirect (HTTP 307)" in hop.body
    assert not hop.session_cookies()


async def test_doctor_does_not_send_the_secret_through_a_redirect(
        mock_server: tuple[object, str], thief: Thief) -> None:
    mock, idp = mock_server
    mock.faults.token_redirect = thief.url  # type: ignore[attr-defined]
    checks = {c.name: c for c in await run_checks(from_dict(config_dict(idp)))}
    tally(FAMILY, refused=not thief.bodies, crashed=False)
    assert thief.bodies == [], "the secret went to " + thief.url
    assert checks["credential"].status == "FAIL"
    assert "redirect (HTTP 307)" in checks["credential"].detail
    assert DEFAULT_CLIENT_SECRET not in str(checks)


async def test_a_redirected_key_set_is_not_followed(make_stack: StackFactory,
                                                    thief: Thief) -> None:
    stack: Stack = await make_stack()
    stack.mock.faults.jwks_redirect = thief.url
    async with aiohttp.ClientSession() as client, client.get(stack.url + "/ready") as resp:
        status, body = resp.status, await resp.json()
    tally(FAMILY, refused=not thief.bodies, crashed=False)
    assert thief.bodies == [] and status == 503
    assert body["reason"] == "The sign-in service's key set (JWKS) answered HTTP 302."
