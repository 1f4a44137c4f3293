"""The mock answers the setup mistakes `doctor` and the callback diagnose as Entra does:
client credentials for the app itself, an expired secret (AADSTS7000222), an unknown app
(AADSTS700016), an unassigned user (AADSTS50105), and a `Date` header from its clock."""

from __future__ import annotations

import dataclasses
import email.utils
import time
from typing import Any

import jwt
import pytest
from yarl import URL

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, MockEntra
from tests.test_mock_entra import REDIRECT, SECRET, Client, assert_token_error

TOKEN = f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/token"


async def app_token(client: Client, **fields: str) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
            "client_secret": SECRET, "scope": f"{DEFAULT_CLIENT_ID}/.default", **fields}
    async with client.post(TOKEN, data=form) as resp:
        return resp.status, await resp.json()


async def test_an_app_gets_a_token_for_itself(client: Client) -> None:
    status, body = await app_token(client)
    assert status == 200
    claims = jwt.decode(str(body["access_token"]), options={"verify_signature": False})
    assert claims["aud"] == DEFAULT_CLIENT_ID and claims["idtyp"] == "app"


async def test_expired_secret_is_7000222(client: Client, mock: MockEntra) -> None:
    registration = mock.clients[DEFAULT_CLIENT_ID]
    mock.clients[DEFAULT_CLIENT_ID] = dataclasses.replace(registration, secret_expired=True)
    status, body = await app_token(client)
    assert status == 401
    assert_token_error(body, "invalid_client", 7000222)
    assert "are expired" in str(body["error_description"])
    status, body = await app_token(client, client_secret="wrong")  # a wrong one stays 7000215
    assert_token_error(body, "invalid_client", 7000215)
    assert "not the client secret ID" in str(body["error_description"])


async def test_unknown_app_is_700016(client: Client) -> None:
    status, body = await app_token(client, client_id="0badc0de-0000-0000-0000-000000000000")
    assert status == 400
    assert_token_error(body, "unauthorized_client", 700016)


@pytest.mark.parametrize("offset", [0.0, 3600.0, -900.0])
async def test_date_header_is_the_mocks_clock(client: Client, mock: MockEntra,
                                              offset: float) -> None:
    mock.clock = lambda: time.time() + 30
    mock.faults.date_offset = offset
    async with client.get(f"/{DEFAULT_TENANT_ID}/v2.0/.well-known/openid-configuration") as resp:
        date = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
    assert abs(date - (time.time() + 30 + offset)) < 3


async def test_assignment_required_sends_unassigned_users_back_with_50105(
        client: Client, mock: MockEntra) -> None:
    registration = mock.clients[DEFAULT_CLIENT_ID]
    mock.clients[DEFAULT_CLIENT_ID] = dataclasses.replace(
        registration, assigned_users=("bob@contoso.example",))
    params = {"client_id": DEFAULT_CLIENT_ID, "response_type": "code", "scope": "openid",
              "redirect_uri": REDIRECT, "state": "s1"}
    for user, assigned in (("alice@contoso.example", False), ("bob@contoso.example", True)):
        mock.auto_user = user
        async with client.get(f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize", params=params,
                              allow_redirects=False) as resp:
            assert resp.status == 302
            location = URL(resp.headers["Location"])
        assert str(location).startswith(REDIRECT + "?")
        if assigned:
            assert "code" in location.query and "error" not in location.query
            continue
        assert list(location.query) == ["error", "error_description", "error_uri", "state"]
        assert location.query["error"] == "interaction_required"
        description = location.query["error_description"]
        assert description.startswith("AADSTS50105: The signed in user '{EmailHidden}' is not "
                                      "assigned to a role for the application")
        assert "\r\nTrace ID: " in description and location.query["state"] == "s1"
