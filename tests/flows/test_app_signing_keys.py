"""App-specific signing keys (issue 18 item 6): an app that uses claims mapping gets tokens
signed with its own key, which Entra publishes only at the JWKS URI with ?appid=<client_id>.
`[azure] app_signing_keys = true` makes the proxy fetch that key set."""

from __future__ import annotations

from typing import Any

import jwt

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID
from tests.conftest import ALICE, StackFactory


async def published_kids(http: Any, url: str) -> set[str]:
    async with http.get(url) as resp:
        return {key["kid"] for key in (await resp.json())["keys"]}


async def test_claims_mapping_app_signs_in_with_app_signing_keys(
        make_stack: StackFactory) -> None:
    stack = await make_stack({"azure": {"app_signing_keys": True}})
    stack.mock.clients[DEFAULT_CLIENT_ID].app_signing_key = True
    assert (await stack.login(ALICE)).status == 200
    kid = jwt.get_unverified_header(stack.mock.issued[-1]["id_token"])["kid"]
    assert kid == stack.mock.keys.app_key(DEFAULT_CLIENT_ID).kid
    jwks = f"{stack.idp}/{DEFAULT_TENANT_ID}/discovery/v2.0/keys"
    async with stack.new_browser() as http:
        assert kid not in await published_kids(http, jwks)  # the tenant's set lacks it
        assert kid in await published_kids(http, f"{jwks}?appid={DEFAULT_CLIENT_ID}")


async def test_without_the_setting_the_app_key_is_unknown(make_stack: StackFactory) -> None:
    stack = await make_stack()
    stack.mock.clients[DEFAULT_CLIENT_ID].app_signing_key = True
    assert (await stack.login(ALICE)).status == 401  # "signed with an unknown key"


async def test_app_signing_keys_still_verify_tenant_signed_tokens(
        make_stack: StackFactory) -> None:
    # The ?appid= set also lists the tenant's keys: turning the setting on early is safe.
    stack = await make_stack({"azure": {"app_signing_keys": True}})
    assert (await stack.login(ALICE)).status == 200


async def test_another_apps_key_is_refused(make_stack: StackFactory) -> None:
    stack = await make_stack({"azure": {"app_signing_keys": True}})
    stack.mock.clients[DEFAULT_CLIENT_ID].app_signing_key = True
    other = stack.mock.keys.app_key("someone-else")
    stack.mock.faults.id_token_header = {"kid": other.kid}
    assert (await stack.login(ALICE)).status == 401
