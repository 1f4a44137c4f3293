"""pass_authorization_header when no token can be had: never forwarded without one, a clear
answer instead (sign in again, 403 saying why, or 50x for an unreachable Entra), and a log
line with the request id."""

from __future__ import annotations

import pytest

from proxy.mock_entra import CALLER_CLIENT_ID, CALLER_CLIENT_SECRET, DEFAULT_CLIENT_ID
from tests.conftest import HTML, Stack, StackFactory
from tests.support import token_upstream as support
from tests.support.entra_tokens import app_token
from tests.support.text_log import captured_text_log
from tests.support.token_upstream import TokenUpstream, get, sign_in

token_upstream = support.token_upstream


@pytest.fixture
async def stack(make_stack: StackFactory, token_upstream: tuple[TokenUpstream, str]) -> Stack:
    return await make_stack(support.token_config(token_upstream[1], "memory"))


def forwarded(upstream: TokenUpstream) -> int:
    return len(upstream.seen)


async def test_missing_consent_is_a_403_saying_so_not_a_sign_in_loop(
        stack: Stack, token_upstream: tuple[TokenUpstream, str]) -> None:
    support.register_api(stack.mock, granted=False)
    await sign_in(stack)
    with captured_text_log("proxy.auth") as log:
        async with stack.client.get(stack.url + "/", headers=HTML,
                                    allow_redirects=False) as resp:
            assert resp.status == 403  # a navigation too: signing in again would not help
            assert "consent" in await resp.text()
        status, body = await get(stack)
    assert status == 403 and "administrator" in body["message"]
    assert f"upstream token refused by Entra request_id={body['request_id']}" in log.getvalue()
    assert "suberror=consent_required" in log.getvalue()
    assert forwarded(token_upstream[0]) == 1  # only /healthz, at sign-in


async def test_a_dead_refresh_token_ends_the_session_and_sends_the_browser_to_sign_in(
        stack: Stack, token_upstream: tuple[TokenUpstream, str]) -> None:
    support.register_api(stack.mock, lifetime=200)  # inside the refresh window: asked every time
    await sign_in(stack)
    assert (await get(stack))[0] == 200
    stack.mock.revoke_refresh_tokens()
    before = forwarded(token_upstream[0])
    cookie = next(c.value for c in stack.client.cookie_jar if c.key == "azp_session")
    with captured_text_log("proxy.auth") as log:
        async with stack.client.get(stack.url + "/", headers=HTML,
                                    allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"].startswith(stack.idp)
            request_id = resp.headers["X-Request-Id"]
    assert f"request_id={request_id}" in log.getvalue()
    assert (await get(stack))[0] == 401  # the session is gone for API calls too
    asked = support.api_grants(stack.mock)
    async with stack.new_browser() as copied, copied.get(  # and server-side, not just here
            stack.url + "/", headers={"Cookie": f"azp_session={cookie}"}) as resp:
        assert resp.status == 401
    assert support.api_grants(stack.mock) == asked  # refused as no session, Entra not asked again
    assert forwarded(token_upstream[0]) == before


async def test_a_first_refusal_right_after_sign_in_is_a_403_not_a_loop(
        stack: Stack, token_upstream: tuple[TokenUpstream, str]) -> None:
    support.register_api(stack.mock)
    await sign_in(stack)
    stack.mock.revoke_refresh_tokens()
    async with stack.client.get(stack.url + "/", headers=HTML,
                                allow_redirects=False) as resp:
        assert resp.status == 403
    assert forwarded(token_upstream[0]) == 1


async def test_entra_unreachable_is_a_503_unless_the_token_in_hand_is_still_valid(
        stack: Stack, token_upstream: tuple[TokenUpstream, str]) -> None:
    support.register_api(stack.mock, lifetime=200)
    await sign_in(stack)
    outage = (503, {"error": "temporarily_unavailable"})
    stack.mock.faults.token_error = outage
    with captured_text_log("proxy.auth") as log:
        status, body = await get(stack)
    assert status == 503, body
    assert f"upstream token unavailable request_id={body['request_id']}" in log.getvalue()
    assert forwarded(token_upstream[0]) == 1
    stack.mock.faults.token_error = None
    status, first = await get(stack)
    assert status == 200
    stack.mock.faults.token_error = outage  # due for refresh, but 200 s from expiry: kept
    status, again = await get(stack)
    assert status == 200 and again["claims"]["uti"] == first["claims"]["uti"]


async def test_an_api_callers_bearer_token_is_refused_not_passed_on(
        make_stack: StackFactory, token_upstream: tuple[TokenUpstream, str]) -> None:
    config = support.token_config(token_upstream[1], "memory")
    config["api"] = {"accept_bearer": True, "audiences": [f"api://{DEFAULT_CLIENT_ID}"],
                     "allowed_client_ids": [CALLER_CLIENT_ID]}
    config["upstreams"][0]["access"] = {"allow_apps": True}
    stack = await make_stack(config)
    support.register_api(stack.mock)
    token = await app_token(stack.idp, CALLER_CLIENT_ID, CALLER_CLIENT_SECRET,
                            f"api://{DEFAULT_CLIENT_ID}")
    with captured_text_log("proxy.auth") as log:
        status, body = await get(stack, Authorization=f"Bearer {token}")
    assert status == 403, body
    assert f"request_id={body['request_id']} user=" in log.getvalue()
    assert "reason=bearer-caller" in log.getvalue()
    assert forwarded(token_upstream[0]) == 0 and support.api_grants(stack.mock) == 0


async def test_an_answer_without_an_access_token_is_a_502_never_an_empty_bearer(
        stack: Stack, token_upstream: tuple[TokenUpstream, str]) -> None:
    support.register_api(stack.mock)
    await sign_in(stack)
    stack.mock.faults.token_error = (200, {"token_type": "Bearer", "expires_in": 3599})
    with captured_text_log("proxy.auth") as log:
        status, body = await get(stack)
    assert status == 502, body
    assert f"request_id={body['request_id']} user=alice@contoso.example " \
        "reason=no-access-token" in log.getvalue()
    assert forwarded(token_upstream[0]) == 1
