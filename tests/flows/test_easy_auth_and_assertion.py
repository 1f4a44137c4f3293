"""App Service Easy Auth compatibility and the signed identity assertion, end to end."""

from __future__ import annotations

import base64
import json

import jwt

from tests.conftest import ALICE, HTML, Stack, StackFactory


async def test_assertion_verifies_from_the_jwks_alone(stack: Stack) -> None:
    resp = await stack.login()
    token = (await resp.json())["headers"]["X-Auth-Assertion"][0]
    async with stack.client.get(stack.url + "/oauth2/jwks") as r:
        jwks = jwt.PyJWKSet.from_dict(await r.json())
    key = next(k for k in jwks.keys if k.key_id == jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=stack.upstream,
                        issuer=stack.url)
    assert claims["preferred_username"] == ALICE
    assert claims["sub"] == f"{claims['tid']}/{claims['oid']}"
    assert len(claims["groups"]) == 2 and claims["roles"] == ["Admin"]


async def test_assertion_can_be_turned_off(make_stack: StackFactory) -> None:
    stack = await make_stack({"identity": {"assertion_header": ""}})
    resp = await stack.login()
    assert "X-Auth-Assertion" not in (await resp.json())["headers"]
    async with stack.client.get(stack.url + "/oauth2/jwks") as r:
        assert (await r.json()) == {"keys": []}


async def test_easy_auth_headers_and_endpoints(make_stack: StackFactory) -> None:
    stack = await make_stack({"identity": {"easy_auth": True}})
    resp = await stack.login()
    headers = (await resp.json())["headers"]
    principal = json.loads(base64.b64decode(headers["X-MS-CLIENT-PRINCIPAL"][0]))
    assert principal["auth_typ"] == "aad"
    claims = {(c["typ"], c["val"]) for c in principal["claims"]}
    assert ("preferred_username", ALICE) in claims and ("roles", "Admin") in claims
    assert headers["X-MS-CLIENT-PRINCIPAL-NAME"] == [ALICE]
    assert headers["X-MS-CLIENT-PRINCIPAL-IDP"] == ["aad"]
    assert not [h for h in headers if h.upper().startswith("X-MS-TOKEN-")]  # opt-in only
    async with stack.client.get(stack.url + "/.auth/me") as r:
        me = await r.json()
    assert me[0]["provider_name"] == "aad" and "access_token" not in me[0]
    async with stack.client.get(stack.url + "/.auth/logout?post_logout_redirect_uri="
                                "https://evil.example/") as r:
        assert r.url.path == "/.auth/logout/done"
    async with stack.client.get(stack.url + "/.auth/me") as r:
        assert r.status == 401
    async with stack.client.get(stack.url + "/.auth/login/aad?post_login_redirect_uri=/back",
                                headers=HTML) as r:
        assert r.url.path == "/back"


async def test_easy_auth_tokens_only_when_enabled_with_a_server_side_store(
        make_stack: StackFactory) -> None:
    stack = await make_stack({"identity": {"easy_auth": True, "easy_auth_tokens": True},
                              "session": {"store": "memory"}})
    resp = await stack.login()
    headers = (await resp.json())["headers"]
    issued = stack.mock.issued[-1]
    assert headers["X-MS-TOKEN-AAD-ID-TOKEN"] == [issued["id_token"]]
    assert headers["X-MS-TOKEN-AAD-ACCESS-TOKEN"] == [issued["access_token"]]
    async with stack.client.get(stack.url + "/.auth/me") as r:
        assert (await r.json())[0]["id_token"] == issued["id_token"]


async def test_without_easy_auth_the_paths_belong_upstream(stack: Stack) -> None:
    await stack.login()
    async with stack.client.get(stack.url + "/.auth/me") as r:
        assert (await r.json())["path"] == "/.auth/me"  # the echo upstream answered


async def test_entra_sid_never_leaves_the_proxy(make_stack: StackFactory) -> None:
    """`sid` is all front-channel logout needs: an app holding it could sign users out of
    everything, so no header, assertion, principal, /.auth/me or userinfo carries it."""
    stack = await make_stack({"identity": {
        "easy_auth": True, "headers": {"X-Forwarded-User": "preferred_username",
                                       "X-Entra-Sid": "sid"}}})
    resp = await stack.login()
    seen = await resp.json()
    sid = next(iter(stack.mock.sessions))  # the Entra sign-in session behind this login
    assert len(stack.mock.sessions) == 1 and sid
    headers = seen["headers"]
    assert "X-Entra-Sid" not in headers and headers["X-Forwarded-User"] == [ALICE]
    principal = base64.b64decode(headers["X-MS-CLIENT-PRINCIPAL"][0]).decode()
    assertion = jwt.decode(headers["X-Auth-Assertion"][0], options={"verify_signature": False})
    async with stack.client.get(stack.url + "/.auth/me") as r:
        me = await r.text()
    async with stack.client.get(stack.url + "/oauth2/userinfo") as r:
        info = await r.json()
    assert "sid" not in info and "sid" not in assertion
    for text in (json.dumps(headers), principal, json.dumps(assertion), me, json.dumps(info)):
        assert sid not in text
    # ... while the proxy itself still knows it: front-channel logout ends this session.
    async with stack.client.get(stack.url + f"/oauth2/frontchannel_logout?sid={sid}") as r:
        assert r.status == 200
    async with stack.client.get(stack.url + "/oauth2/userinfo") as r:
        assert r.status == 401
