"""One admission path (proxy/admission.py), each endpoint's gate pinned: who counts as
signed in, whether the access policy applies, and what a client without a session gets."""

from __future__ import annotations

from tests.conftest import ALICE, HTML, Stack, StackFactory

ENDPOINTS = {
    "/": "Sign in first: this request carries no valid session.",  # the gateway
    "/oauth2/auth": "Sign in first: this request carries no valid session.",
    "/oauth2/userinfo": "No valid session.",
    "/.auth/me": "No valid session.",
}


async def test_no_session_is_the_documented_401_everywhere(make_stack: StackFactory) -> None:
    stack = await make_stack({"identity": {"easy_auth": True}})
    for path, message in ENDPOINTS.items():
        async with stack.client.get(stack.url + path,
                                    headers={"Accept": "application/json"}) as r:
            body = await r.json()
            assert r.status == 401, path
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="azure-auth-proxy"', path
            assert body == {"error": "unauthenticated", "message": message,
                            "request_id": r.headers["X-Request-Id"]}, path


async def test_only_a_browser_navigation_is_sent_to_sign_in(stack: Stack) -> None:
    async with stack.client.get(stack.url + "/", headers=HTML, allow_redirects=False) as r:
        assert r.status == 302 and "/authorize?" in r.headers["Location"]
    for path in ("/oauth2/auth", "/oauth2/userinfo"):  # never a redirect: scripts ask these
        async with stack.client.get(stack.url + path, headers=HTML,
                                    allow_redirects=False) as r:
            assert r.status == 401, path


async def test_the_policy_gates_apps_but_not_the_users_own_identity(
        make_stack: StackFactory) -> None:
    stack = await make_stack({"identity": {"easy_auth": True},
                              "access": {"emails": ["bob@contoso.example"]}})
    assert (await stack.login()).status == 403  # signed in, but the policy says no
    for path in ("/", "/oauth2/auth"):
        async with stack.client.get(stack.url + path) as r:
            assert r.status == 403, path
            assert ALICE in (await r.json())["message"], path
    async with stack.client.get(stack.url + "/oauth2/userinfo") as r:
        assert r.status == 200 and (await r.json())["user"] == ALICE
    async with stack.client.get(stack.url + "/.auth/me") as r:
        assert r.status == 200 and (await r.json())[0]["user_id"] == ALICE
