"""API clients with Entra access tokens (no cookies), over real sockets."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, OTHER_TENANT_ID, MockEntra
from proxy.mock_entra.keys import encode_jws
from tests.conftest import Stack, StackFactory

AUDIENCE = f"api://{DEFAULT_CLIENT_ID}"


def api_token(mock: MockEntra, idp: str, **overrides: Any) -> str:
    """An access token for our API, signed with the mock's current Entra key."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": AUDIENCE, "iss": f"{idp}/{DEFAULT_TENANT_ID}/v2.0", "iat": now, "nbf": now,
        "exp": now + 3600, "tid": DEFAULT_TENANT_ID, "oid": str(uuid.uuid4()), "sub": "s",
        "preferred_username": "svc-client@contoso.example", "scp": "access_as_user",
        "roles": ["Reader"], "ver": "2.0", "azp": str(uuid.uuid4()),
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    key = mock.keys.current
    return encode_jws({"typ": "JWT", "alg": "RS256", "kid": key.kid}, claims, key.sign_rs256)


@pytest.fixture
async def api(make_stack: StackFactory) -> Stack:
    return await make_stack({"api": {"accept_bearer": True, "audiences": [AUDIENCE]}})


async def call(stack: Stack, token: str, path: str = "/api/items") -> tuple[int, Any, str]:
    async with stack.client.get(stack.url + path,
                                headers={"Authorization": f"Bearer {token}"}) as resp:
        body = await resp.json()
        return resp.status, body, resp.headers.get("WWW-Authenticate", "")


async def test_valid_bearer_token_reaches_upstream_with_identity(api: Stack) -> None:
    status, body, _ = await call(api, api_token(api.mock, api.idp))
    assert status == 200
    headers = {k.lower(): v for k, v in body["headers"].items()}
    assert headers["x-forwarded-user"] == ["svc-client@contoso.example"]
    assert headers["x-forwarded-roles"] == ["Reader"]
    assert headers["authorization"][0].startswith("Bearer ")  # the API may check it again
    assert not [c for c in api.client.cookie_jar if c.key.startswith("azp_session")]


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


async def test_bearer_after_key_rotation_is_followed(api: Stack) -> None:
    assert (await call(api, api_token(api.mock, api.idp)))[0] == 200
    api.mock.rotate_keys()
    assert (await call(api, api_token(api.mock, api.idp)))[0] == 200


async def test_without_accept_bearer_the_header_is_just_passed_along(stack: Stack) -> None:
    async with stack.client.get(stack.url + "/api", headers={
            "Authorization": "Bearer whatever"}) as resp:
        assert resp.status == 401
        assert 'error="invalid_token"' not in resp.headers["WWW-Authenticate"]


async def test_an_id_token_is_not_an_api_credential(make_stack: StackFactory) -> None:
    # The bare client ID is a legitimate audience for v1-style API tokens, and it is also
    # every ID token's aud: the proxy must still tell them apart.
    stack = await make_stack({"api": {"accept_bearer": True,
                                      "audiences": [AUDIENCE, DEFAULT_CLIENT_ID]}})
    await stack.login()
    id_token = stack.mock.issued[-1]["id_token"]
    status, body, challenge = await call(stack, id_token)
    assert status == 401 and "not an access token" in body["message"]
    no_client = api_token(stack.mock, stack.idp, azp=None, aud=DEFAULT_CLIENT_ID)
    assert (await call(stack, no_client))[0] == 401
    assert (await call(stack, api_token(stack.mock, stack.idp, aud=DEFAULT_CLIENT_ID)))[0] == 200
