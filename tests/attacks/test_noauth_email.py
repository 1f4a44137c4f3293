"""Trust only the claims Entra vouches for (nOAuth, issue 16 item 12).

Entra's `email` claim is whatever an admin typed: in a multi-tenant setup, Mallory's own
tenant can give her `alice@contoso.example`. Email and domain rules, and every email-bearing
header, the assertion and the Easy Auth principal, use `email` only when Entra's optional
`xms_edov` claim says its domain is verified; `preferred_username` is never an address."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from proxy.config_load import from_dict
from proxy.errors import ConfigError
from proxy.mock_entra import DEFAULT_TENANT_ID, OTHER_TENANT_ID
from proxy.mock_entra.users import MockUser
from tests.attacks.conftest import ShieldFactory
from tests.attacks.harness import Upstream, tally
from tests.conftest import ALICE, Stack, base_config

MALLORY = "mallory@fabrikam.example"
MULTI = {"azure": {"tenant_id": "organizations",
                   "allowed_tenants": [DEFAULT_TENANT_ID, OTHER_TENANT_ID]}}
RULES = [{"emails": [ALICE]}, {"domains": ["contoso.example"]}]


def add_mallory(stack: Stack, verified: bool = False) -> None:
    """A user of another tenant whose unverified email is a home-tenant address."""
    stack.mock.users[MALLORY] = MockUser(
        username=MALLORY, name="Mallory", oid="3a110000-0000-4000-8000-000000000009",
        tid=OTHER_TENANT_ID, email=ALICE, email_domain_verified=verified)


def routes(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"path": "/", "public": ["^/healthz$"]}, {"path": "/admin", "access": rule}]


@pytest.mark.parametrize("store", ["cookie", "memory", "redis"])
@pytest.mark.parametrize("rule", RULES, ids=["emails", "domains"])
async def test_a_foreign_user_with_a_home_tenant_email_passes_no_rule(
        shield: ShieldFactory, upstream: Upstream, redis_url: str, store: str,
        rule: dict[str, Any]) -> None:
    stack = await shield({**MULTI, "identity": {"easy_auth": True},
                          "session": {"store": store, "redis_url": redis_url}}, routes(rule))
    add_mallory(stack)
    resp = await stack.login(MALLORY, path="/admin/x")
    tally("noauth-email", refused=resp.status == 403, crashed=resp.status >= 500)
    assert resp.status == 403
    assert [a for a in upstream.seen if a.path.startswith("/admin")] == []
    # On an open route she gets in, but nothing sent upstream says she is alice.
    upstream.seen.clear()
    async with stack.client.get(stack.url + "/open") as r:
        assert r.status == 200
    arrival = upstream.seen[-1]
    assert arrival.values("X-Forwarded-Email") == []
    assert arrival.values("X-Forwarded-User") == [MALLORY]
    principal = base64.b64decode(arrival.values("X-MS-CLIENT-PRINCIPAL")[0]).decode()
    assertion = jwt.decode(arrival.values("X-Auth-Assertion")[0],
                           options={"verify_signature": False})
    async with stack.client.get(stack.url + "/oauth2/userinfo") as r:
        info = await r.json()
    for seen in (json.dumps(arrival.headers), principal, json.dumps(assertion),
                 json.dumps(info)):
        assert ALICE not in seen
    tally("noauth-email", refused=True, crashed=False)


async def test_the_real_alice_with_a_vouched_email_passes(shield: ShieldFactory,
                                                          upstream: Upstream) -> None:
    stack = await shield(MULTI, routes({"domains": ["contoso.example"]}))
    resp = await stack.login(ALICE, path="/admin/x")
    assert resp.status == 200
    assert upstream.seen[-1].values("X-Forwarded-Email") == [ALICE]


async def test_without_xms_edov_the_email_is_not_used(shield: ShieldFactory,
                                                      upstream: Upstream) -> None:
    """A registration without the optional claim: email rules fail closed for everyone."""
    stack = await shield(MULTI, routes({"emails": [ALICE]}))
    for client in stack.mock.clients.values():
        client.optional_claims = ()
    resp = await stack.login(ALICE, path="/admin/x")
    assert resp.status == 403 and "xms_edov" in await resp.text()
    async with stack.client.get(stack.url + "/open") as r:
        assert r.status == 200
    assert upstream.seen[-1].values("X-Forwarded-Email") == []


async def test_preferred_username_is_not_an_email(shield: ShieldFactory,
                                                  upstream: Upstream) -> None:
    stack = await shield(MULTI, routes({"domains": ["contoso.example"]}))
    resp = await stack.login("bob@contoso.example", path="/admin/x")  # no email at all
    tally("noauth-email", refused=resp.status == 403, crashed=False)
    assert resp.status == 403


async def test_single_tenant_may_opt_in_to_its_own_admins_emails(shield: ShieldFactory,
                                                                 upstream: Upstream) -> None:
    stack = await shield({"azure": {"tenant_id": DEFAULT_TENANT_ID},
                          "identity": {"trust_unverified_email": True}},
                         routes({"emails": [ALICE]}))
    for client in stack.mock.clients.values():
        client.optional_claims = ()
    resp = await stack.login(ALICE, path="/admin/x")
    assert resp.status == 200
    assert upstream.seen[-1].values("X-Forwarded-Email") == [ALICE]


@pytest.mark.parametrize("azure", [
    {"tenant_id": "organizations"},
    {"tenant_id": "common", "allow_any_tenant": True},
    {"tenant_id": DEFAULT_TENANT_ID, "allowed_tenants": [OTHER_TENANT_ID]},
])
def test_the_opt_in_is_refused_for_more_than_one_tenant(azure: dict[str, Any]) -> None:
    config = base_config(4180, "http://127.0.0.1:9", "http://127.0.0.1:9")
    config["azure"].update(azure)
    config["identity"] = {"trust_unverified_email": True}
    with pytest.raises(ConfigError) as info:
        from_dict(config)
    assert any(p.startswith("identity.trust_unverified_email:") for p in info.value.problems)
