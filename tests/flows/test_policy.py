"""Access policy over real sockets: group-gated routes, the 403 page, tenants and domains."""

from __future__ import annotations

from proxy.mock_entra import DEFAULT_TENANT_ID, MockEntra
from tests.conftest import HTML, StackFactory


def dave_only_group(mock: MockEntra) -> str:
    dave = mock.users["dave@contoso.example"]
    others = {g for name, u in mock.users.items() if name != dave.username for g in u.groups}
    return next(g for g in reversed(dave.groups) if g not in others)


async def test_overage_groups_from_graph_gate_a_route(make_stack: StackFactory,
                                                      mock_server: tuple[MockEntra, str]) -> None:
    mock, _ = mock_server
    group = dave_only_group(mock)
    # 250 groups do not fit a cookie (session/budget.py): a server-side store keeps them.
    stack = await make_stack({"session": {"store": "memory"}, "upstreams": [
        {"path": "/", "url": "http://127.0.0.1:9", "public": ["^/healthz$"]},
        {"path": "/admin", "url": (await make_stack()).upstream,
         "access": {"groups": [group]}}]})
    resp = await stack.login("dave@contoso.example", path="/admin/panel")
    assert resp.status == 200  # dave's 250 groups came from Graph, including this one
    bob = stack.new_browser()
    async with bob:
        resp = await stack.login("bob@contoso.example", client=bob, path="/admin/panel")
        assert resp.status == 403
        page = await resp.text()
        assert "bob@contoso.example" in page and "Sign out" in page
        async with bob.get(stack.url + "/admin/x", headers={"Accept": "application/json"}) as r:
            assert r.status == 403 and (await r.json())["error"] == "access_denied"


async def test_global_policy_domains_and_tenants(make_stack: StackFactory) -> None:
    stack = await make_stack({"access": {"domains": ["contoso.example"],
                                         "tenants": [DEFAULT_TENANT_ID]}})
    assert (await stack.login("alice@contoso.example")).status == 200
    other = await make_stack({"access": {"emails": ["bob@contoso.example"]}})
    assert (await other.login("alice@contoso.example")).status == 403
    async with other.client.get(other.url + "/", headers=HTML) as resp:
        assert "alice@contoso.example" in await resp.text()
