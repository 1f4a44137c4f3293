"""API clients with Entra access tokens (no cookies), over real sockets.

Tokens come from the mock Entra ID as a tenant issues them (tests/support/entra_tokens.py):
client credentials for app-only callers, a user's code for delegated ones, v1 or v2 by the
API's accessTokenAcceptedVersion. Hand-built tokens are kept for shapes Entra never issues.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest

from proxy.mock_entra import (
    CALLER_CLIENT_ID,
    CALLER_CLIENT_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_TENANT_ID,
    OTHER_TENANT_ID,
    STRANGER_CLIENT_ID,
    STRANGER_CLIENT_SECRET,
    MockEntra,
)
from proxy.mock_entra.keys import encode_jws
from tests.conftest import Stack, StackFactory
from tests.support.entra_tokens import app_token, claims_of, user_token

AUDIENCE = f"api://{DEFAULT_CLIENT_ID}"
ALICE = "alice@contoso.example"
SCOPE = f"{AUDIENCE}/access_as_user"


def api_token(mock: MockEntra, idp: str, **overrides: Any) -> str:
    """A hand-built token for our API (odd cases), signed with the mock's current key."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": AUDIENCE, "iss": f"{idp}/{DEFAULT_TENANT_ID}/v2.0", "iat": now, "nbf": now,
        "exp": now + 3600, "tid": DEFAULT_TENANT_ID, "oid": str(uuid.uuid4()), "sub": "s",
        "preferred_username": "svc-client@contoso.example", "scp": "access_as_user",
        "roles": ["Reader"], "ver": "2.0", "azp": CALLER_CLIENT_ID,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    key = mock.keys.current
    return encode_jws({"typ": "JWT", "alg": "RS256", "kid": key.kid}, claims, key.sign_rs256)


def api_config(upstream: str, **api: Any) -> dict[str, Any]:
    """`/` admits users only; `/jobs` also admits apps (allow_apps)."""
    return {
        "api": {"accept_bearer": True, "audiences": [AUDIENCE],
                "allowed_client_ids": [CALLER_CLIENT_ID], **api},
        "identity": {"easy_auth": True},
        "upstreams": [{"path": "/jobs", "url": upstream, "access": {"allow_apps": True}},
                      {"path": "/", "url": upstream, "public": ["^/healthz$"]}],
    }


@pytest.fixture
async def api(make_stack: StackFactory, upstream_url: str) -> Stack:
    return await make_stack(api_config(upstream_url))


async def call(stack: Stack, token: str, path: str = "/api/items",
               **headers: str) -> tuple[int, Any, str]:
    async with stack.client.get(stack.url + path, headers={
            "Authorization": f"Bearer {token}", **headers}) as resp:
        body = await resp.json()
        return resp.status, body, resp.headers.get("WWW-Authenticate", "")


def seen(body: Any) -> dict[str, list[str]]:
    """The headers the echo upstream received, by lower-case name."""
    return {k.lower(): v for k, v in body["headers"].items()}


def principal_claims(headers: dict[str, list[str]]) -> dict[str, list[str]]:
    decoded = json.loads(base64.b64decode(headers["x-ms-client-principal"][0]))
    out: dict[str, list[str]] = {}
    for claim in decoded["claims"]:
        out.setdefault(claim["typ"], []).append(claim["val"])
    return out


def caller_token(api: Stack) -> Any:
    return user_token(api.mock, api.idp, CALLER_CLIENT_ID, CALLER_CLIENT_SECRET, ALICE, SCOPE)


@pytest.mark.parametrize("version,resource,aud", [
    (None, AUDIENCE, AUDIENCE),  # the default: v1, aud as the client named the API
    (1, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_ID),
    (2, AUDIENCE, DEFAULT_CLIENT_ID),  # v2: always the GUID, never configured, implied
])
async def test_a_users_token_from_an_allowed_client_reaches_the_upstream_as_a_user(
        api: Stack, version: int | None, resource: str, aud: str) -> None:
    api.mock.clients[DEFAULT_CLIENT_ID].access_token_version = version
    token = await user_token(api.mock, api.idp, CALLER_CLIENT_ID, CALLER_CLIENT_SECRET, ALICE,
                             f"{resource}/access_as_user")
    claims = claims_of(token)
    assert claims["aud"] == aud and claims["scp"] == "access_as_user"
    assert claims["ver"] == ("2.0" if version == 2 else "1.0")
    if version != 2:
        assert claims["iss"] == f"https://sts.windows.net/{DEFAULT_TENANT_ID}/"
        assert claims["appid"] == CALLER_CLIENT_ID
    status, body, _ = await call(api, token, **{"X-Forwarded-Principal-Type": "app"})
    assert status == 200, body
    headers = seen(body)
    assert headers["x-forwarded-user"] == [ALICE]
    assert headers["x-forwarded-roles"] == ["Admin"]
    assert headers["x-forwarded-principal-type"] == ["user"]  # the client's copy is gone
    assert "idtyp" not in principal_claims(headers)
    assert headers["authorization"][0].startswith("Bearer ")  # the API may check it again
    assert not [c for c in api.client.cookie_jar if c.key.startswith("azp_session")]


async def test_a_users_token_from_another_client_is_refused(api: Stack) -> None:
    # Alice consented to some other app asking for our API's scope: valid, signed, right aud.
    token = await user_token(api.mock, api.idp, STRANGER_CLIENT_ID, STRANGER_CLIENT_SECRET,
                             ALICE, SCOPE)
    assert claims_of(token)["appid"] == STRANGER_CLIENT_ID
    status, body, _ = await call(api, token)
    assert status == 403 and body["request_id"]
    assert "allowed clients" in body["message"]


@pytest.mark.parametrize("path", ["/api/items", "/jobs/run"])
async def test_any_apps_client_credentials_token_is_refused(api: Stack, path: str) -> None:
    # Entra hands a tenant's API token to any app in the tenant: no roles, idtyp app.
    token = await app_token(api.idp, STRANGER_CLIENT_ID, STRANGER_CLIENT_SECRET, AUDIENCE)
    claims = claims_of(token)
    assert claims["idtyp"] == "app" and "scp" not in claims and "roles" not in claims
    status, body, _ = await call(api, token, path)
    assert status == 403 and body["request_id"]


async def test_an_allowed_app_passes_only_where_apps_are_allowed_and_as_an_app(
        api: Stack) -> None:
    token = await app_token(api.idp, CALLER_CLIENT_ID, CALLER_CLIENT_SECRET, AUDIENCE)
    claims = claims_of(token)
    assert claims["roles"] == ["Reader"] and claims["oid"] == claims["sub"]
    status, body, _ = await call(api, token, "/api/items")
    assert status == 403 and "app-only" in body["message"]
    status, body, _ = await call(api, token, "/jobs/run",
                                 **{"X-Forwarded-Principal-Type": "user"})
    assert status == 200, body
    headers = seen(body)
    assert headers["x-forwarded-principal-type"] == ["app"]
    assert headers["x-forwarded-object-id"] == [claims["oid"]]
    assertion = headers["x-auth-assertion"][0].split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(assertion + "==="))["idtyp"] == "app"
    assert principal_claims(headers)["idtyp"] == ["app"]


async def test_forward_auth_refuses_apps_where_the_policy_does_not_allow_them(
        api: Stack) -> None:
    for client, secret in ((CALLER_CLIENT_ID, CALLER_CLIENT_SECRET),
                           (STRANGER_CLIENT_ID, STRANGER_CLIENT_SECRET)):
        token = await app_token(api.idp, client, secret, AUDIENCE)
        status, body, _ = await call(api, token, "/oauth2/auth")
        assert status == 403 and body["request_id"]


@pytest.mark.parametrize("setting,passes", [
    ({"required_app_roles": ["Jobs.Run"]}, False),
    ({"required_app_roles": ["Jobs.Run", "Reader"]}, True),
    ({"required_scopes": ["Items.Read"]}, False),
    ({"required_scopes": ["access_as_user"]}, True),
])
async def test_required_scopes_and_app_roles(make_stack: StackFactory, upstream_url: str,
                                             setting: dict[str, list[str]],
                                             passes: bool) -> None:
    stack = await make_stack(api_config(upstream_url, **setting))
    if "required_app_roles" in setting:
        token = await app_token(stack.idp, CALLER_CLIENT_ID, CALLER_CLIENT_SECRET, AUDIENCE)
    else:
        token = await caller_token(stack)
    status, body, _ = await call(stack, token, "/jobs/x")
    assert status == (200 if passes else 403), body


async def test_v1_tokens_are_checked_against_the_v1_keys(api: Stack) -> None:
    api.mock.clients[DEFAULT_CLIENT_ID].access_token_version = 2
    v2 = await caller_token(api)
    api.mock.clients[DEFAULT_CLIENT_ID].access_token_version = None
    v1 = await caller_token(api)
    api.mock.faults.v1_jwks_status = 503  # only /{tenant}/discovery/keys fails
    assert (await call(api, v2))[0] == 200
    status, body, _ = await call(api, v1)
    assert status == 503, body  # the v1 keys were needed and are away: no guess
    api.mock.faults.v1_jwks_status = None
    assert (await call(api, v1))[0] == 200


async def test_v1_issuer_comes_from_the_clouds_v1_document(api: Stack) -> None:
    api.mock.sts_host = "sts.chinacloudapi.cn"  # as Azure operated by 21Vianet issues them
    token = await caller_token(api)
    assert claims_of(token)["iss"] == f"https://sts.chinacloudapi.cn/{DEFAULT_TENANT_ID}/"
    assert (await call(api, token))[0] == 200
    # The global cloud's issuer is not this cloud's, though the key is the same.
    global_iss = api_token(api.mock, api.idp, iss=f"https://sts.windows.net/{DEFAULT_TENANT_ID}/",
                           ver="1.0")
    status, body, challenge = await call(api, global_iss)
    assert status == 401 and "issuer" in body["message"] and "invalid_token" in challenge


@pytest.mark.parametrize("overrides", [
    {"aud": "api://someone-else"},
    {"aud": "00000003-0000-0000-c000-000000000000"},
    {"exp": int(time.time()) - 3600},
    {"iss": f"http://127.0.0.1:1/{DEFAULT_TENANT_ID}/v2.0"},
    {"tid": OTHER_TENANT_ID, "iss": None},
    {"tid": None},
])
async def test_bad_bearer_tokens_get_invalid_token(api: Stack, overrides: dict[str, Any]) -> None:
    if overrides.get("iss", "") is None:
        overrides = {**overrides, "iss": f"{api.idp}/{OTHER_TENANT_ID}/v2.0"}
    status, body, challenge = await call(api, api_token(api.mock, api.idp, **overrides))
    assert status == 401
    assert 'error="invalid_token"' in challenge
    assert body["request_id"]


async def test_forged_and_graph_tokens_are_refused(api: Stack) -> None:
    good = api_token(api.mock, api.idp)
    head, payload, sig = good.split(".")
    status, _, challenge = await call(api, f"{head}.{payload}.{sig[:-4]}AAAA")
    assert status == 401 and "invalid_token" in challenge
    api.mock.auto_user = "alice@contoso.example"
    await api.login()
    graph_token = api.mock.issued[-1]["access_token"]  # aud Graph, header nonce
    fresh = api.new_browser()
    async with fresh:
        async with fresh.get(api.url + "/api", headers={
                "Authorization": f"Bearer {graph_token}"}) as resp:
            assert resp.status == 401


@pytest.mark.parametrize("version", [None, 2])
async def test_bearer_after_key_rotation_is_followed(api: Stack, version: int | None) -> None:
    api.mock.clients[DEFAULT_CLIENT_ID].access_token_version = version
    assert (await call(api, await caller_token(api)))[0] == 200
    api.mock.rotate_keys()
    assert (await call(api, await caller_token(api)))[0] == 200


async def test_without_accept_bearer_the_header_is_just_passed_along(stack: Stack) -> None:
    async with stack.client.get(stack.url + "/api", headers={
            "Authorization": "Bearer whatever"}) as resp:
        assert resp.status == 401
        assert 'error="invalid_token"' not in resp.headers["WWW-Authenticate"]


async def test_an_id_token_is_not_an_api_credential(make_stack: StackFactory,
                                                    upstream_url: str) -> None:
    # The bare client ID is always an accepted audience (v2 API tokens carry only it), and
    # it is also every ID token's aud: the proxy must still tell them apart.
    stack = await make_stack(api_config(upstream_url))
    await stack.login()
    id_token = stack.mock.issued[-1]["id_token"]
    status, body, challenge = await call(stack, id_token)
    assert status == 401 and "not an access token" in body["message"]
    no_client = api_token(stack.mock, stack.idp, azp=None, aud=DEFAULT_CLIENT_ID)
    assert (await call(stack, no_client))[0] == 401
    assert (await call(stack, api_token(stack.mock, stack.idp, aud=DEFAULT_CLIENT_ID)))[0] == 200
