"""B2B guests (issue 18 item 2), against a mock that models Entra's guest objects.

Entra gives a guest the token of the tenant whose authority they sign in on: on the resource
tenant's own authority (tenant_id = its GUID), the guest object there (`tid`/`oid` of the
resource tenant, `acct` = 1, `idp` = the home tenant's issuer); on organizations/common, the
home tenant's token. `[access] members_only` refuses guests, failing closed without `acct`.
"""

from __future__ import annotations

import json
from typing import Any

import jwt

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, OTHER_TENANT_ID
from proxy.mock_entra.users import CAROL_GUEST_OID, ENGINEERING_GROUP_ID, sts_issuer
from tests.conftest import ALICE, Stack, StackFactory

CAROL = "carol@fabrikam.example"
CAROL_HOME_OID = "ca201000-0000-4000-8000-000000000003"
MEMBERS_ONLY = {"access": {"members_only": True}}


def last_id_token(stack: Stack) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(stack.mock.issued[-1]["id_token"],
                                        options={"verify_signature": False})
    return claims


def request_acct(stack: Stack) -> None:
    """Add `acct` to the app registration's optional claims, as the portal guide says."""
    client = stack.mock.clients[DEFAULT_CLIENT_ID]
    client.optional_claims = (*client.optional_claims, "acct")


async def upstream_headers(resp: Any) -> dict[str, list[str]]:
    body = json.loads(await resp.text())
    return {k.lower(): v for k, v in body["headers"].items()}


async def test_guest_on_the_resource_tenant_gets_the_guest_object(stack: Stack) -> None:
    request_acct(stack)
    resp = await stack.login(CAROL)  # tenant_id is contoso's GUID
    assert resp.status == 200
    claims = last_id_token(stack)
    assert claims["iss"] == f"{stack.idp}/{DEFAULT_TENANT_ID}/v2.0"
    assert (claims["tid"], claims["oid"]) == (DEFAULT_TENANT_ID, CAROL_GUEST_OID)
    assert claims["acct"] == 1 and claims["idp"] == sts_issuer(OTHER_TENANT_ID)
    headers = await upstream_headers(resp)
    assert headers["x-forwarded-tenant-id"] == [DEFAULT_TENANT_ID]
    assert headers["x-forwarded-object-id"] == [CAROL_GUEST_OID]
    assert headers["x-forwarded-groups"] == [ENGINEERING_GROUP_ID]  # the resource tenant's


async def test_member_tokens_say_member_and_carry_no_idp(stack: Stack) -> None:
    request_acct(stack)
    assert (await stack.login(ALICE)).status == 200
    claims = last_id_token(stack)
    assert claims["acct"] == 0 and "idp" not in claims


async def test_guest_through_organizations_gets_the_home_token(make_stack: StackFactory) -> None:
    stack = await make_stack({"azure": {"tenant_id": "organizations",
                                        "allowed_tenants": [DEFAULT_TENANT_ID]}})
    # Carol is a guest of the allowed tenant, but her token is fabrikam's: refused, and
    # allowing fabrikam instead would admit that whole partner tenant.
    assert (await stack.login(CAROL)).status == 403
    claims = last_id_token(stack)
    assert claims["iss"] == f"{stack.idp}/{OTHER_TENANT_ID}/v2.0"
    assert (claims["tid"], claims["oid"]) == (OTHER_TENANT_ID, CAROL_HOME_OID)
    assert "idp" not in claims


async def test_members_only_refuses_guests_and_admits_members(make_stack: StackFactory) -> None:
    stack = await make_stack(MEMBERS_ONLY)
    request_acct(stack)
    assert (await stack.login(ALICE)).status == 200
    carol = stack.new_browser()
    async with carol:
        resp = await stack.login(CAROL, client=carol)
        assert resp.status == 403
        assert "guest" in await resp.text()


async def test_members_only_reads_idp_when_acct_says_member(make_stack: StackFactory) -> None:
    stack = await make_stack(MEMBERS_ONLY)
    request_acct(stack)
    stack.mock.faults.id_token_claims = {"acct": 0}  # idp still names Carol's home tenant
    assert (await stack.login(CAROL)).status == 403


async def test_members_only_without_the_acct_claim_fails_closed(
        make_stack: StackFactory) -> None:
    stack = await make_stack(MEMBERS_ONLY)  # the registration lacks the acct optional claim
    resp = await stack.login(ALICE)
    assert resp.status == 403
    assert "acct" in await resp.text()


async def test_members_only_on_one_upstream(make_stack: StackFactory, upstream_url: str) -> None:
    stack = await make_stack({"upstreams": [
        {"path": "/", "url": upstream_url, "public": ["^/healthz$"]},
        {"path": "/staff", "url": upstream_url, "access": {"members_only": True}}]})
    request_acct(stack)
    assert (await stack.login(CAROL)).status == 200
    assert (await stack.login(CAROL, path="/staff/x")).status == 403
