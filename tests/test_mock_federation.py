"""The mock Entra ID's federated identity credentials and its managed identity endpoint, over
real sockets: a federated client_assertion is accepted only from a trusted issuer, with its
key, an audience and subject a federated credential names, and within its lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, MockEntra
from proxy.mock_entra.federation import ExternalIssuer
from proxy.mock_entra.identity_endpoint import APP_SERVICE_PATH, IMDS_PATH, MockIdentityEndpoint
from proxy.oidc.credentials import ASSERTION_TYPE
from tests.conftest import served
from tests.support.federation import (
    AKS_ISSUER,
    ENTRA_ISSUER,
    HEADER,
    SUBJECT,
    USER_CLIENT_ID,
    identity_endpoint,
    trust,
)


@pytest.fixture
def entra(mock_server: tuple[MockEntra, str]) -> tuple[MockEntra, str, ExternalIssuer]:
    mock, idp = mock_server
    issuer = trust(mock, AKS_ISSUER, SUBJECT)
    return mock, f"{idp}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", issuer


async def redeem(token_url: str, assertion: str) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
            "scope": f"api://{DEFAULT_CLIENT_ID}/.default",
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    async with aiohttp.ClientSession() as http, http.post(token_url, data=form) as resp:
        body: dict[str, Any] = await resp.json()
        return resp.status, body


async def test_a_trusted_federated_token_authenticates_the_app(
        entra: tuple[MockEntra, str, ExternalIssuer]) -> None:
    mock, token_url, issuer = entra
    assertion = issuer.token(SUBJECT)
    status, body = await redeem(token_url, assertion)
    assert status == 200, body
    assert "access_token" in body
    assert mock.client_assertions == [assertion]


@pytest.mark.parametrize(("case", "code"), [
    ("unknown issuer", 700211),
    ("wrong audience", 700212),
    ("wrong subject", 700213),
    ("subject in another case", 700213),
    ("expired", 700024),
    ("not yet valid", 700024),
    ("signed with another key", 700027),
])
async def test_a_federated_token_is_refused(
        entra: tuple[MockEntra, str, ExternalIssuer], case: str, code: int) -> None:
    _, token_url, issuer = entra
    assertion = {
        "unknown issuer": lambda: ExternalIssuer("https://evil.example/").token(SUBJECT),
        "wrong audience": lambda: issuer.token(SUBJECT, audience="api://other"),
        "wrong subject": lambda: issuer.token("system:serviceaccount:web:other"),
        "subject in another case": lambda: issuer.token(SUBJECT.upper()),
        "expired": lambda: issuer.token(SUBJECT, lifetime=-60),
        "not yet valid": lambda: issuer.token(SUBJECT, extra={"nbf": 2**31}),
        # The trusted issuer's name, another key: only the issuer's key may sign.
        "signed with another key": lambda: ExternalIssuer(AKS_ISSUER).token(SUBJECT),
    }[case]()
    status, body = await redeem(token_url, assertion)
    assert status == 401, body
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [code], body
    assert body["error_description"].startswith(f"AADSTS{code}:")


async def test_a_federated_credential_of_another_app_does_not_count(
        entra: tuple[MockEntra, str, ExternalIssuer]) -> None:
    mock, token_url, issuer = entra
    mock.clients[DEFAULT_CLIENT_ID].federated_credentials.clear()
    status, body = await redeem(token_url, issuer.token(SUBJECT))
    assert status == 401 and body["error_codes"] == [700211], body


# --- the managed identity endpoint ------------------------------------------------------------


@pytest.fixture
async def identity() -> AsyncIterator[tuple[MockIdentityEndpoint, str]]:
    endpoint = identity_endpoint(ExternalIssuer(ENTRA_ISSUER))
    async with served(endpoint.app()) as url:
        yield endpoint, url


async def get(url: str, params: dict[str, str],
              headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, \
            http.get(url, params=params, headers=headers) as resp:
        body: dict[str, Any] = await resp.json()
        return resp.status, body


IMDS = {"api-version": "2018-02-01", "resource": "api://AzureADTokenExchange"}
APP_SERVICE = {"api-version": "2019-08-01", "resource": "api://AzureADTokenExchange"}


async def test_imds_answers_only_with_the_metadata_header(
        identity: tuple[MockIdentityEndpoint, str]) -> None:
    _, base = identity
    status, body = await get(base + IMDS_PATH, IMDS, {})
    assert status == 400 and "metadata header" in body["error_description"]
    status, body = await get(base + IMDS_PATH, IMDS, {"Metadata": "true"})
    assert status == 200, body
    assert body["resource"] == "api://AzureADTokenExchange"
    assert body["expires_on"].isdigit() and body["expires_in"].isdigit()


async def test_imds_user_assigned_identity_by_client_id(
        identity: tuple[MockIdentityEndpoint, str]) -> None:
    _, base = identity
    known = {**IMDS, "client_id": USER_CLIENT_ID}
    status, _ = await get(base + IMDS_PATH, known, {"Metadata": "true"})
    assert status == 200
    unknown = {**IMDS, "client_id": "c1d00000-0000-4000-8000-0000000000ff"}
    status, body = await get(base + IMDS_PATH, unknown, {"Metadata": "true"})
    assert status == 400 and body["error_description"] == "Identity not found"


@pytest.mark.parametrize("header", [None, "wrong-value"])
async def test_app_service_form_needs_the_identity_header(
        identity: tuple[MockIdentityEndpoint, str], header: str | None) -> None:
    _, base = identity
    headers = {} if header is None else {"X-IDENTITY-HEADER": header}
    status, _ = await get(base + APP_SERVICE_PATH, APP_SERVICE, headers)
    assert status == 401
    status, body = await get(base + APP_SERVICE_PATH, APP_SERVICE,
                             {"X-IDENTITY-HEADER": HEADER})
    assert status == 200, body


async def test_each_form_wants_its_own_api_version(
        identity: tuple[MockIdentityEndpoint, str]) -> None:
    _, base = identity
    status, _ = await get(base + IMDS_PATH, APP_SERVICE, {"Metadata": "true"})
    assert status == 400
    status, _ = await get(base + APP_SERVICE_PATH, IMDS,
                          {"X-IDENTITY-HEADER": HEADER})
    assert status == 400
