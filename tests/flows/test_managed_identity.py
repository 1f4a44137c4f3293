"""A managed identity as the app's federated credential, end to end: the proxy gets a token
for api://AzureADTokenExchange from a loopback managed identity endpoint (IMDS form, or App
Service form from IDENTITY_ENDPOINT / IDENTITY_HEADER), caches it until shortly before it
expires, and presents it as the client assertion. Never the real link-local IMDS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from proxy.app import build_app
from proxy.config_load import from_dict
from proxy.mock_entra import DEFAULT_CLIENT_ID, MockEntra
from proxy.mock_entra.federation import FederatedCredential
from proxy.mock_entra.identity_endpoint import APP_SERVICE_PATH, IMDS_PATH, MockIdentityEndpoint
from tests.conftest import (
    ProxyTestServer,
    Stack,
    StackFactory,
    base_config,
    deep_merge,
    free_port,
    served,
)
from tests.support.federation import (
    ENTRA_ISSUER,
    HEADER,
    SYSTEM_PRINCIPAL,
    USER_CLIENT_ID,
    USER_PRINCIPAL,
    identity_endpoint,
    trust,
)


@pytest.fixture
async def identity(mock_server: tuple[MockEntra, str]
                   ) -> AsyncIterator[tuple[MockIdentityEndpoint, str]]:
    """The VM's identity endpoint; the app trusts the system-assigned identity (issuer = the
    tenant, subject = its principal id), as `az ad app federated-credential create` sets up."""
    endpoint = identity_endpoint(trust(mock_server[0], ENTRA_ISSUER, SYSTEM_PRINCIPAL))
    async with served(endpoint.app()) as url:
        yield endpoint, url


def managed(url: str, **azure: str) -> dict[str, Any]:
    return {"azure": {"client_secret": "", "client_credential": "managed_identity",
                      "imds_url": url, **azure}}


async def sign_in(stack: Stack) -> int:
    async with stack.new_browser() as browser:
        return (await stack.login(client=browser)).status


async def test_imds_token_signs_in_and_is_cached(
        make_stack: StackFactory, identity: tuple[MockIdentityEndpoint, str]) -> None:
    endpoint, base = identity
    stack = await make_stack(managed(base + IMDS_PATH))
    assert await sign_in(stack) == 200
    assert "client_secret" not in stack.mock.token_requests[-1]
    assert endpoint.calls == [{"api-version": "2018-02-01",
                               "resource": "api://AzureADTokenExchange"}]
    assert await sign_in(stack) == 200
    assert len(endpoint.calls) == 1  # the cached token served the second sign-in
    first, second = stack.mock.client_assertions
    assert first == second


async def test_a_token_near_its_expiry_is_fetched_again(
        make_stack: StackFactory, identity: tuple[MockIdentityEndpoint, str]) -> None:
    endpoint, base = identity
    endpoint.lifetime = 240.0  # inside the 5-minute margin: never worth caching
    stack = await make_stack(managed(base + IMDS_PATH))
    assert await sign_in(stack) == 200
    assert await sign_in(stack) == 200
    assert len(endpoint.calls) == 2


async def test_user_assigned_identity_is_asked_for_by_client_id(
        make_stack: StackFactory, identity: tuple[MockIdentityEndpoint, str],
        mock_server: tuple[MockEntra, str]) -> None:
    endpoint, base = identity
    mock, _ = mock_server
    mock.clients[DEFAULT_CLIENT_ID].federated_credentials[:] = [
        FederatedCredential(ENTRA_ISSUER, USER_PRINCIPAL)]
    stack = await make_stack(managed(base + IMDS_PATH, managed_identity_client_id=USER_CLIENT_ID))
    assert await sign_in(stack) == 200
    assert endpoint.calls[0]["client_id"] == USER_CLIENT_ID


async def test_an_identity_the_app_does_not_trust_fails_sign_in(
        make_stack: StackFactory, identity: tuple[MockIdentityEndpoint, str],
        caplog: pytest.LogCaptureFixture) -> None:
    _, base = identity
    # The user-assigned identity exists, but the app's federated credential names the other.
    stack = await make_stack(managed(base + IMDS_PATH, managed_identity_client_id=USER_CLIENT_ID))
    assert await sign_in(stack) == 502
    assert any(m.startswith("login failed request_id=") and "aadsts=700213" in m
               for m in caplog.messages), caplog.messages


async def test_app_service_form_from_the_platform_environment(
        mock_server: tuple[MockEntra, str], upstream_url: str,
        identity: tuple[MockIdentityEndpoint, str]) -> None:
    endpoint, base = identity
    mock, idp = mock_server
    port = free_port()
    data = deep_merge(base_config(port, idp, upstream_url),
                      {"azure": {"client_secret": "", "client_credential": "managed_identity"}})
    # As App Service and Container Apps set them; no global state: the mapping is passed in.
    config = from_dict(data, {"IDENTITY_ENDPOINT": base + APP_SERVICE_PATH,
                              "IDENTITY_HEADER": HEADER})
    assert config.azure.imds_url == base + APP_SERVICE_PATH
    server = ProxyTestServer(build_app(config), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            stack = Stack(mock, config, f"http://127.0.0.1:{port}", idp, upstream_url, browser)
            assert (await stack.login()).status == 200
    finally:
        await server.close()
    assert endpoint.calls == [{"api-version": "2019-08-01",
                               "resource": "api://AzureADTokenExchange"}]


@pytest.mark.parametrize(("where", "cause"), [
    ("wrong form", "answered HTTP 401: unauthorized (X-IDENTITY-HEADER is missing"),
    ("unreachable", "is unreachable"),
])
async def test_an_unusable_identity_endpoint_fails_sign_in_and_readiness(
        make_stack: StackFactory, identity: tuple[MockIdentityEndpoint, str],
        caplog: pytest.LogCaptureFixture, where: str, cause: str) -> None:
    _, base = identity
    # The App Service path wants its own header: the IMDS form (no identity_header) is
    # refused there, as a misconfigured endpoint would be in Azure.
    url = (base + APP_SERVICE_PATH if where == "wrong form"
           else f"http://127.0.0.1:{free_port()}{IMDS_PATH}")
    stack = await make_stack(managed(url))
    assert await sign_in(stack) == 502
    failures = [m for m in caplog.messages if m.startswith("login failed request_id=")]
    assert len(failures) == 1 and cause in failures[0], caplog.messages
    async with stack.client.get(stack.url + "/ready") as resp:
        assert resp.status == 503
        assert "managed identity endpoint" in (await resp.json())["reason"]
