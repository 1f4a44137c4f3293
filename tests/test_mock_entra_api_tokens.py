"""The mock Entra ID issues tokens for a registered API as a tenant does, over real sockets:
client credentials (app-only), delegated (a user's code), v1 or v2 by the API's
accessTokenAcceptedVersion, and the v1 discovery document and keys."""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
import pytest

from proxy.mock_entra import (
    CALLER_CLIENT_ID,
    CALLER_CLIENT_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_TENANT_ID,
    STRANGER_CLIENT_ID,
    STRANGER_CLIENT_SECRET,
    MockEntra,
)
from tests.support.entra_tokens import app_token, claims_of, user_token

URI = f"api://{DEFAULT_CLIENT_ID}"


@pytest.fixture
def entra(mock_server: tuple[MockEntra, str]) -> tuple[MockEntra, str]:
    return mock_server  # the suite's mock Entra ID (tests/conftest.py)


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, url
        return await resp.json()


async def token_error(idp: str, tenant: str, **fields: str) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "client_credentials", "client_id": CALLER_CLIENT_ID,
            "client_secret": CALLER_CLIENT_SECRET, **fields}
    async with aiohttp.ClientSession() as http, http.post(
            f"{idp}/{tenant}/oauth2/v2.0/token", data=form) as resp:
        return resp.status, await resp.json()


def verify(token: str, jwks: dict[str, Any], audience: str) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    return dict(jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=audience))


@pytest.mark.parametrize("resource", [URI, DEFAULT_CLIENT_ID])
async def test_client_credentials_v1_token_for_any_app_in_the_tenant(
        entra: tuple[MockEntra, str], resource: str) -> None:
    mock, idp = entra
    token = await app_token(idp, STRANGER_CLIENT_ID, STRANGER_CLIENT_SECRET, resource)
    v1 = await get_json(f"{idp}/{DEFAULT_TENANT_ID}/.well-known/openid-configuration")
    claims = verify(token, await get_json(v1["jwks_uri"]), resource)
    assert claims["iss"] == v1["issuer"] == f"https://sts.windows.net/{DEFAULT_TENANT_ID}/"
    assert claims["aud"] == resource  # v1: the name the client used
    assert claims["appid"] == STRANGER_CLIENT_ID and claims["idtyp"] == "app"
    assert claims["idp"] == claims["iss"] and claims["ver"] == "1.0"
    assert claims["oid"] == claims["sub"] == mock.clients[STRANGER_CLIENT_ID].service_principal_oid
    assert "roles" not in claims and "scp" not in claims and "azp" not in claims
    body = mock.issued[-1]
    assert "refresh_token" not in body and "id_token" not in body


async def test_client_credentials_v2_token_carries_assigned_roles(
        entra: tuple[MockEntra, str]) -> None:
    mock, idp = entra
    mock.clients[DEFAULT_CLIENT_ID].access_token_version = 2
    token = await app_token(idp, CALLER_CLIENT_ID, CALLER_CLIENT_SECRET, URI)
    v2 = await get_json(f"{idp}/{DEFAULT_TENANT_ID}/v2.0/.well-known/openid-configuration")
    claims = verify(token, await get_json(v2["jwks_uri"]), DEFAULT_CLIENT_ID)
    assert claims["aud"] == DEFAULT_CLIENT_ID  # v2: always the GUID
    assert claims["iss"] == v2["issuer"] and claims["ver"] == "2.0"
    assert claims["azp"] == CALLER_CLIENT_ID and claims["roles"] == ["Reader"]
    assert "appid" not in claims and "idp" not in claims
    assert "nonce" not in jwt.get_unverified_header(token)  # unlike Graph's, verifiable


@pytest.mark.parametrize("tenant,fields,status,code", [
    (DEFAULT_TENANT_ID, {"scope": f"{URI}/access_as_user"}, 400, 1002012),
    (DEFAULT_TENANT_ID, {"scope": "api://nobody/.default"}, 400, 500011),
    ("organizations", {"scope": f"{URI}/.default"}, 400, 50059),
    (DEFAULT_TENANT_ID, {"scope": f"{URI}/.default", "client_secret": "wrong"}, 401, 7000215),
])
async def test_client_credentials_errors(entra: tuple[MockEntra, str], tenant: str,
                                         fields: dict[str, str], status: int,
                                         code: int) -> None:
    got, body = await token_error(entra[1], tenant, **fields)
    assert got == status and code in body["error_codes"], body


@pytest.mark.parametrize("version", [None, 2])
async def test_delegated_token_for_the_api(entra: tuple[MockEntra, str],
                                           version: int | None) -> None:
    mock, idp = entra
    mock.clients[DEFAULT_CLIENT_ID].access_token_version = version
    token = await user_token(mock, idp, CALLER_CLIENT_ID, CALLER_CLIENT_SECRET,
                             "alice@contoso.example", f"{URI}/access_as_user")
    claims = claims_of(token)
    assert claims["scp"] == "access_as_user" and claims["oid"].startswith("a11ce")
    assert "idtyp" not in claims  # optional in user tokens: the proxy must not need it
    if version == 2:
        assert claims["azp"] == CALLER_CLIENT_ID and claims["aud"] == DEFAULT_CLIENT_ID
        assert claims["preferred_username"] == "alice@contoso.example"
    else:
        assert claims["appid"] == CALLER_CLIENT_ID and claims["aud"] == URI
        assert claims["upn"] == claims["unique_name"] == "alice@contoso.example"


async def test_without_an_api_scope_the_access_token_is_still_graphs(
        entra: tuple[MockEntra, str]) -> None:
    mock, idp = entra
    token = await user_token(mock, idp, CALLER_CLIENT_ID, CALLER_CLIENT_SECRET,
                             "alice@contoso.example", "User.Read")
    assert claims_of(token)["aud"] == "00000003-0000-0000-c000-000000000000"


async def test_v1_document_per_tenant_kind_and_cloud(entra: tuple[MockEntra, str]) -> None:
    mock, idp = entra
    multi = await get_json(f"{idp}/organizations/.well-known/openid-configuration")
    assert multi["issuer"] == "https://sts.windows.net/{tenantid}/"
    assert multi["jwks_uri"] == f"{idp}/common/discovery/keys"
    mock.sts_host = "sts.chinacloudapi.cn"
    single = await get_json(f"{idp}/contoso.example/.well-known/openid-configuration")
    assert single["issuer"] == f"https://sts.chinacloudapi.cn/{DEFAULT_TENANT_ID}/"
    assert single["jwks_uri"] == f"{idp}/{DEFAULT_TENANT_ID}/discovery/keys"
    v1_keys = await get_json(single["jwks_uri"])
    assert {k["kid"] for k in v1_keys["keys"]} == {mock.keys.current.kid}
    mock.faults.v1_jwks_status = 503
    async with aiohttp.ClientSession() as http:
        async with http.get(single["jwks_uri"]) as resp:
            assert resp.status == 503
        async with http.get(f"{idp}/{DEFAULT_TENANT_ID}/discovery/v2.0/keys") as resp:
            assert resp.status == 200


async def refresh_for(idp: str, refresh_token: str, scope: str) -> tuple[int, dict[str, Any]]:
    """The refresh_token grant the proxy's own client sends for another API's token."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{idp}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", data={
                "grant_type": "refresh_token", "client_id": CALLER_CLIENT_ID,
                "client_secret": CALLER_CLIENT_SECRET, "refresh_token": refresh_token,
                "scope": f"{scope} offline_access"}) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("granted", [True, False])
async def test_default_scope_on_a_refresh_grant_is_what_was_consented(
        entra: tuple[MockEntra, str], granted: bool) -> None:
    """`<api>/.default` with a user's refresh token: the client's consented permissions on
    that API, v2 by the API's manifest, with the API's token lifetime; without any, Entra's
    invalid_grant AADSTS65001 with suberror consent_required."""
    mock, idp = entra
    api = mock.clients[DEFAULT_CLIENT_ID]
    api.access_token_version, api.access_token_lifetime = 2, 1234
    if granted:
        mock.clients[CALLER_CLIENT_ID].delegated_grants[DEFAULT_CLIENT_ID] = ("access_as_user",)
    await user_token(mock, idp, CALLER_CLIENT_ID, CALLER_CLIENT_SECRET,
                     "alice@contoso.example", "offline_access User.Read")
    refresh_token = mock.issued[-1]["refresh_token"]
    status, body = await refresh_for(idp, refresh_token, f"{URI}/.default")
    if not granted:
        assert status == 400 and body["error"] == "invalid_grant", body
        assert body["error_codes"] == [65001] and body["suberror"] == "consent_required"
        return
    assert status == 200 and body["expires_in"] == 1234, body
    jwks = await get_json(f"{idp}/{DEFAULT_TENANT_ID}/discovery/v2.0/keys")
    claims = verify(body["access_token"], jwks, DEFAULT_CLIENT_ID)
    assert claims["scp"] == "access_as_user" and claims["azp"] == CALLER_CLIENT_ID
    assert claims["iss"] == f"{idp}/{DEFAULT_TENANT_ID}/v2.0" and claims["oid"].startswith("a11c")
    assert claims["exp"] - claims["iat"] == 1234
