"""Each tenant mode accepts its own users' tokens and refuses other tenants' (ENTRA.md §3)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config import AzureConfig
from proxy.mock_entra import CONSUMERS_TENANT_ID, DEFAULT_TENANT_ID, OTHER_TENANT_ID
from proxy.oidc.discovery import Metadata
from proxy.oidc.graph import graph_base
from tests.conftest import StackFactory
from tests.support.idtoken_faults import from_tenant

ALICE, CAROL, ERIN = "alice@contoso.example", "carol@fabrikam.example", "erin@outlook.example"


def azure(**kw: Any) -> dict[str, Any]:
    return {"azure": kw}


async def test_verified_domain_tenant(make_stack: StackFactory) -> None:
    stack = await make_stack(azure(tenant_id="contoso.example"))
    assert (await stack.login(ALICE)).status == 200
    foreign = await make_stack(azure(tenant_id="contoso.example"))
    from_tenant(OTHER_TENANT_ID)(foreign)
    assert (await foreign.login(ALICE)).status == 401


async def test_common_with_allowed_tenants(make_stack: StackFactory) -> None:
    stack = await make_stack(azure(tenant_id="common",
                                   allowed_tenants=[DEFAULT_TENANT_ID, CONSUMERS_TENANT_ID]))
    assert (await stack.login(ALICE)).status == 200
    personal = stack.new_browser()
    async with personal:
        assert (await stack.login(ERIN, client=personal)).status == 200
    carol = stack.new_browser()
    async with carol:
        assert (await stack.login(CAROL, client=carol)).status == 403


async def test_common_issuer_must_carry_the_tokens_own_tid(make_stack: StackFactory) -> None:
    stack = await make_stack(azure(tenant_id="common", allow_any_tenant=True))
    stack.mock.faults.id_token_claims = {"iss": f"{stack.idp}/{OTHER_TENANT_ID}/v2.0"}
    assert (await stack.login(ALICE)).status == 401  # iss names another tenant than tid


async def test_consumers(make_stack: StackFactory) -> None:
    stack = await make_stack(azure(tenant_id="consumers"))
    assert (await stack.login(ERIN)).status == 200
    work = await make_stack(azure(tenant_id="consumers"))
    from_tenant(DEFAULT_TENANT_ID)(work)
    assert (await work.login(ERIN)).status == 401


@pytest.mark.parametrize("cloud,graph", [
    ("https://login.microsoftonline.com/", "https://graph.microsoft.com"),
    ("https://login.microsoftonline.us/", "https://graph.microsoft.us"),
    ("https://login.partner.microsoftonline.cn/", "https://microsoftgraph.chinacloudapi.cn"),
    ("https://login.chinacloudapi.cn/", "https://microsoftgraph.chinacloudapi.cn"),
])
def test_graph_host_follows_the_cloud(cloud: str, graph: str) -> None:
    empty = Metadata("i", "a", "t", "j", "", "", "")
    assert graph_base(AzureConfig(cloud_instance=cloud), empty) == graph
    told = Metadata("i", "a", "t", "j", "", "", "dod-graph.microsoft.us")
    assert graph_base(AzureConfig(cloud_instance=cloud), told) == "https://dod-graph.microsoft.us"
    assert graph_base(AzureConfig(cloud_instance=cloud, graph_url="https://g.example/"),
                      told) == "https://g.example"
