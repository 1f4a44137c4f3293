"""The mock Entra ID's authentication at /authorize (proxy/mock_entra/authentication.py):
the SSO session and `auth_time`, `prompt=login`, `max_age`, authentication contexts asked
for with `claims`, and `amr`. Over real sockets, with the helpers of test_mock_entra."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from yarl import URL

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, MockEntra
from tests.test_mock_entra import ALICE, Client, authorize_params, pkce, tokens_for

ACRS_C1 = json.dumps({"id_token": {"acrs": {"essential": True, "values": ["c1"]}}})


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mock() -> MockEntra:  # overrides test_mock_entra's: a clock the test moves
    return MockEntra(clock=Clock())


async def id_token(client: Client, mock: MockEntra, **params: str) -> dict[str, Any]:
    body = await tokens_for(client, mock, **params)
    claims: dict[str, Any] = jwt.decode(body["id_token"], options={"verify_signature": False})
    return claims


def move(mock: MockEntra, seconds: float) -> None:
    clock = mock.clock
    assert isinstance(clock, Clock)
    clock.now += seconds


async def test_auth_time_only_as_optional_claim_or_when_max_age_is_sent(
        client: Client, mock: MockEntra) -> None:
    assert "auth_time" not in await id_token(client, mock)
    assert (await id_token(client, mock, max_age="3600"))["auth_time"] == 1_800_000_000
    mock.clients[DEFAULT_CLIENT_ID].optional_claims += ("auth_time",)
    assert (await id_token(client, mock))["auth_time"] == 1_800_000_000


async def test_sso_keeps_auth_time_until_max_age_or_prompt_login(
        client: Client, mock: MockEntra) -> None:
    first = (await id_token(client, mock, max_age="900"))["auth_time"]
    move(mock, 600)
    assert (await id_token(client, mock, max_age="900"))["auth_time"] == first  # SSO
    move(mock, 600)
    renewed = (await id_token(client, mock, max_age="900"))["auth_time"]
    assert renewed == first + 1200  # older than max_age: authenticated anew
    move(mock, 10)
    assert (await id_token(client, mock, max_age="900", prompt="login"))["auth_time"] == \
        renewed + 10


async def test_acrs_lists_the_satisfied_contexts_and_mfa_is_done(
        client: Client, mock: MockEntra) -> None:
    mock.id_token_amr = True
    plain = await id_token(client, mock)
    assert "acrs" not in plain and plain["amr"] == ["pwd"]
    stepped = await id_token(client, mock, claims=ACRS_C1)
    assert stepped["acrs"] == ["c1"] and stepped["amr"] == ["pwd", "mfa"]
    single = json.dumps({"id_token": {"acrs": {"essential": True, "value": "c2"}}})
    assert (await id_token(client, mock, claims=single))["acrs"] == ["c2"]


async def test_an_unsatisfiable_context_is_left_out(client: Client, mock: MockEntra) -> None:
    mock.unsatisfiable_contexts.add("c1")
    assert "acrs" not in await id_token(client, mock, claims=ACRS_C1)


async def test_no_amr_in_v2_id_tokens_by_default(client: Client, mock: MockEntra) -> None:
    mock.users[ALICE].mfa = True
    assert "amr" not in await id_token(client, mock)


async def test_malformed_claims_are_an_error_sent_back(client: Client, mock: MockEntra) -> None:
    mock.auto_user = ALICE
    _, challenge = pkce()
    resp = await client.get(f"/{DEFAULT_TENANT_ID}/oauth2/v2.0/authorize",
                            params=authorize_params(challenge, claims="{not json"),
                            allow_redirects=False)
    assert resp.status == 302
    query = URL(resp.headers["Location"]).query
    assert query["error"] == "invalid_request" and "AADSTS9000410" in query["error_description"]
