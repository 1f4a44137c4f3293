"""Big directories (issue 18 item 3): Graph's transitiveMemberOf answers in pages of at most
999 entries (@odata.nextLink) that mix groups with directory roles and administrative units.
A 1,000-group user's groups all reach the app through a server-side store (over repeated
lines, in a header budget raised to fit them: tests/flows/test_header_limits.py has the
defaults); the roles and units, which are not groups, do not."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from yarl import URL

from proxy.mock_entra import MockEntra
from proxy.mock_entra.users import BIG_DIRECTORY_GROUP_COUNT
from tests.conftest import StackFactory, served
from tests.flows.test_server_sessions import STORES, store_config

GINA = "gina@contoso.example"


@pytest.mark.parametrize("store", STORES)
async def test_a_thousand_groups_reach_the_app(make_stack: StackFactory, redis_url: str,
                                               store: str) -> None:
    stack = await make_stack({**store_config(store, redis_url),
                              "identity": {"max_total_header_bytes": 65536}})
    gina = stack.mock.users[GINA]
    assert len(gina.groups) == BIG_DIRECTORY_GROUP_COUNT == 1000
    resp = await stack.login(GINA)
    assert resp.status == 200
    body = json.loads(await resp.text())
    headers = {k.lower(): v for k, v in body["headers"].items()}
    groups = ",".join(headers["x-forwarded-groups"]).split(",")
    assert sorted(groups) == sorted(gina.groups)
    assert not set(groups) & set(gina.directory_roles + gina.admin_units)


async def test_graph_pages_mix_object_types(make_stack: StackFactory, redis_url: str) -> None:
    """What the mock serves: 999 per page at most, roles and units among the groups."""
    stack = await make_stack(store_config("memory", redis_url))
    assert (await stack.login(GINA)).status == 200
    token = stack.mock.issued[-1]["access_token"]
    url = stack.idp + "/v1.0/me/transitiveMemberOf?$select=id&$top=999"
    types: list[str] = []
    pages = 0
    async with stack.new_browser() as http:
        while url:
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                page = await resp.json()
            pages += 1
            assert len(page["value"]) <= 999
            types += [entry["@odata.type"] for entry in page["value"]]
            url = page.get("@odata.nextLink", "")
    assert pages == 2
    assert types.count("#microsoft.graph.group") == 1000
    assert types.count("#microsoft.graph.directoryRole") == 1
    assert types.count("#microsoft.graph.administrativeUnit") == 1


async def test_groups_are_not_read_from_the_lagging_index(
        make_stack: StackFactory, mock_server: tuple[MockEntra, str], redis_url: str,
        upstream_url: str) -> None:
    """An admin just added Dave to a group; Graph's eventually consistent index (what
    `ConsistencyLevel: eventual` reads) does not list it yet. The proxy asks the directory."""
    dave = mock_server[0].users["dave@contoso.example"]
    newest = dave.groups[-1]
    mock_server[0].graph_index_lag[dave.username] = dave.groups[:-1]
    stack = await make_stack({**store_config("memory", redis_url), "upstreams": [
        {"path": "/", "url": upstream_url, "public": ["^/healthz$"]},
        {"path": "/new", "url": upstream_url, "access": {"groups": [newest]}}]})
    assert (await stack.login(dave.username, path="/new/x")).status == 200


async def test_a_discovery_document_cannot_send_graph_calls_elsewhere(
        make_stack: StackFactory, redis_url: str) -> None:
    """The user's Graph access token goes to discovery's `msgraph_host`: a document naming a
    host that is neither Microsoft Graph nor the IdP's own is refused (502), and the host that
    would have received the token hears nothing."""
    heard: list[str] = []

    async def thief(request: web.Request) -> web.Response:
        heard.append(request.headers.get("Authorization", ""))
        return web.json_response({"value": []})

    app = web.Application()
    app.router.add_get("/{tail:.*}", thief)
    async with served(app) as elsewhere:
        stack = await make_stack(store_config("memory", redis_url))
        stack.mock.faults.discovery_msgraph_host = URL(elsewhere).raw_authority
        resp = await stack.login(GINA)
        assert resp.status == 502
        assert "Graph host that is not Microsoft Graph" in await resp.text()
    assert heard == []
