"""Sign-out URL (issue 18 item 8): with the `login_hint` optional claim, Entra's logout gets
`logout_hint` instead of the whole ID token, so the URL stays short; Entra (the mock) ends
that account's session from the hint."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from proxy.mock_entra import DEFAULT_CLIENT_ID
from tests.conftest import ALICE, StackFactory
from tests.flows.test_server_sessions import STORES, store_config


@pytest.mark.parametrize("store", STORES)
async def test_logout_hint_replaces_the_id_token(make_stack: StackFactory, redis_url: str,
                                                 store: str) -> None:
    stack = await make_stack({**store_config(store, redis_url),
                              "azure": {"federated_logout": True}})
    client = stack.mock.clients[DEFAULT_CLIENT_ID]
    client.optional_claims = (*client.optional_claims, "login_hint")
    await stack.login(ALICE)
    assert list(stack.mock.sessions.values()) == [ALICE]
    async with stack.client.get(stack.url + "/oauth2/sign_out", allow_redirects=False) as resp:
        location = resp.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert "id_token_hint" not in query and query["client_id"] == [DEFAULT_CLIENT_ID]
    assert len(query["logout_hint"][0]) < 100 and len(location) < 400
    async with stack.client.get(location) as resp:
        assert resp.status == 200
    assert stack.mock.sessions == {}  # Entra signed that account out
    assert stack.mock.logouts[-1]["redirected"] == "true"
