"""Step-up per route (issue 14 item 3) over real sockets: the proxy, the mock Entra ID (which
honours `claims`, `max_age` and `prompt=login`) and the echo upstream.

Routes: `/` plain, `/secure` needs authentication context c1, `/fresh` a sign-in in the last
15 minutes, `/mfa` multi-factor authentication. Redirects are followed by hand and counted,
so a loop shows as a walk that never ends.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import pytest
from yarl import URL

from proxy.mock_entra import DEFAULT_CLIENT_ID, DELETE
from tests.conftest import ALICE, HTML, Stack, StackFactory
from tests.flows.test_bearer_api import api_config, api_token, call

MAX_HOPS = 10
JSON = {"Accept": "application/json"}


@dataclass
class Walk:
    status: int
    text: str
    hops: list[URL]  # every Location followed, in order

    def authorize_params(self) -> dict[str, str]:
        """The query of the (single) authorize request of this walk."""
        asks = [hop for hop in self.hops if hop.path.endswith("/oauth2/v2.0/authorize")]
        assert len(asks) == 1, self.hops
        return dict(asks[0].query)


async def walk(client: aiohttp.ClientSession, url: str, headers: dict[str, str] = HTML) -> Walk:
    """GET `url` and follow redirects by hand (at most MAX_HOPS: more is a loop)."""
    hops: list[URL] = []
    current = URL(url)
    for _ in range(MAX_HOPS):
        async with client.get(current, headers=headers, allow_redirects=False) as resp:
            text = await resp.text()
            if resp.status not in (301, 302, 303, 307):
                return Walk(resp.status, text, hops)
            current = current.join(URL(resp.headers["Location"]))
            hops.append(current)
    raise AssertionError(f"redirect loop: {[str(h) for h in hops]}")


@pytest.fixture
async def stepped(make_stack: StackFactory, upstream_url: str) -> Stack:
    stack = await make_stack({
        "server": {"trusted_proxies": ["127.0.0.1/32"]},
        "upstreams": [
            {"path": "/", "url": upstream_url},
            {"path": "/secure", "url": upstream_url, "access": {"auth_context": ["c1"]}},
            {"path": "/fresh", "url": upstream_url, "access": {"max_auth_age": "15m"}},
            {"path": "/mfa", "url": upstream_url, "access": {"require_mfa": True}},
        ]})
    stack.mock.auto_user = ALICE
    return stack


def last_id_token(stack: Stack) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(stack.mock.issued[-1]["id_token"],
                                        options={"verify_signature": False})
    return claims


async def test_an_auth_context_route_asks_for_it_and_never_loops(stepped: Stack) -> None:
    assert (await walk(stepped.client, stepped.url + "/")).status == 200
    stepped_up = await walk(stepped.client, stepped.url + "/secure")
    assert stepped_up.status == 200
    claims = json.loads(stepped_up.authorize_params()["claims"])
    assert claims == {"id_token": {"acrs": {"essential": True, "values": ["c1"]}}}
    assert last_id_token(stepped)["acrs"] == ["c1"]
    # Back and forth: no redirect at all, the proof stays with the session.
    for path in ("/", "/secure", "/", "/secure/x"):
        again = await walk(stepped.client, stepped.url + path)
        assert (again.status, again.hops) == (200, []), path


async def test_signing_in_for_a_stepped_up_page_asks_at_once(stepped: Stack) -> None:
    result = await walk(stepped.client, stepped.url + "/secure")
    assert result.status == 200
    assert "c1" in result.authorize_params()["claims"]  # one sign-in, not two


@pytest.mark.parametrize("refusal", ["unsatisfiable", "claim-missing", "other-context"])
async def test_a_token_without_the_context_is_refused_with_a_page(
        stepped: Stack, refusal: str) -> None:
    if refusal == "unsatisfiable":  # the user cannot meet the Conditional Access policy
        stepped.mock.unsatisfiable_contexts.add("c1")
    else:
        stepped.mock.faults.id_token_claims = {
            "acrs": DELETE if refusal == "claim-missing" else ["c2"]}
    result = await walk(stepped.client, stepped.url + "/secure")
    assert result.status == 403 and len(result.hops) == 2  # authorize, then the callback
    assert "authentication context" in result.text
    assert "acrs" not in last_id_token(stepped) or refusal == "other-context"
    # Refused sign-ins leave no session: the plain page asks for a (plain) sign-in.
    plain = await walk(stepped.client, stepped.url + "/")
    assert plain.status == 200 and "claims" not in plain.authorize_params()


async def test_xhr_gets_a_401_claims_challenge_naming_the_missing_claim(stepped: Stack) -> None:
    await walk(stepped.client, stepped.url + "/")
    for path, missing in (("/secure", "acrs"), ("/mfa", "amr"), ("/fresh", "auth_time")):
        async with stepped.client.get(stepped.url + path, headers=JSON,
                                      allow_redirects=False) as resp:
            body = await resp.json()
            assert resp.status == 401, path
            challenge = resp.headers["WWW-Authenticate"]
        assert 'error="insufficient_claims"' in challenge
        assert f"step-up required: {missing}" in challenge
        match = re.search(r'claims="([^"]+)"', challenge)
        assert match is not None
        assert missing in json.loads(base64.b64decode(match.group(1)))["id_token"]
        assert body["error"] == "step_up_required" and body["request_id"]


async def test_max_auth_age_signs_in_again_with_max_age(stepped: Stack) -> None:
    client = stepped.mock.clients[DEFAULT_CLIENT_ID]
    client.optional_claims = (*client.optional_claims, "auth_time")
    stepped.mock.clock = lambda: time.time() - 1200  # signed in 20 minutes ago
    assert (await walk(stepped.client, stepped.url + "/")).status == 200
    old = last_id_token(stepped)["auth_time"]
    stepped.mock.clock = time.time
    result = await walk(stepped.client, stepped.url + "/fresh")
    assert result.status == 200
    params = result.authorize_params()
    assert params["max_age"] == "900" and params["prompt"] == "login"
    assert last_id_token(stepped)["auth_time"] > old + 1000  # Entra authenticated anew
    for path in ("/", "/fresh", "/"):
        assert (await walk(stepped.client, stepped.url + path)).hops == [], path


async def test_a_sign_in_entra_did_not_renew_is_refused(stepped: Stack) -> None:
    # Entra's clock (or an ignored max_age) gives an auth_time older than the route allows.
    stepped.mock.clock = lambda: time.time() - 1200
    result = await walk(stepped.client, stepped.url + "/fresh")
    assert result.status == 403 and "more recent sign-in" in result.text
    assert result.authorize_params()["max_age"] == "900"


async def test_require_mfa(stepped: Stack) -> None:
    stepped.mock.id_token_amr = True
    assert (await walk(stepped.client, stepped.url + "/")).status == 200
    no_mfa = await walk(stepped.client, stepped.url + "/mfa")
    assert no_mfa.status == 403 and "multi-factor" in no_mfa.text
    stepped.mock.users[ALICE].mfa = True
    assert (await walk(stepped.client, stepped.url + "/mfa")).status == 200
    assert last_id_token(stepped)["amr"] == ["pwd", "mfa"]
    for path in ("/", "/mfa"):
        assert (await walk(stepped.client, stepped.url + path)).hops == [], path


async def test_without_amr_in_the_token_mfa_is_not_assumed(stepped: Stack) -> None:
    stepped.mock.users[ALICE].mfa = True  # done, but v2.0 ID tokens do not say so
    result = await walk(stepped.client, stepped.url + "/mfa")
    assert result.status == 403 and "amr" not in last_id_token(stepped)


async def test_a_plain_sign_in_keeps_the_proof_earned(stepped: Stack) -> None:
    assert (await walk(stepped.client, stepped.url + "/secure")).status == 200
    resign = await walk(stepped.client, stepped.url + "/oauth2/start?rd=/")
    assert resign.status == 200 and "claims" not in resign.authorize_params()
    assert (await walk(stepped.client, stepped.url + "/secure")).hops == []


async def test_another_users_proof_is_not_inherited(stepped: Stack) -> None:
    assert (await walk(stepped.client, stepped.url + "/secure")).status == 200
    stepped.mock.auto_user = "bob@contoso.example"
    assert (await walk(stepped.client, stepped.url + "/oauth2/start?rd=/")).status == 200
    result = await walk(stepped.client, stepped.url + "/secure")
    assert result.status == 200 and len(result.hops) == 3  # Bob stepped up himself


async def test_forward_auth_applies_the_step_up(stepped: Stack) -> None:
    await walk(stepped.client, stepped.url + "/")
    check = stepped.url + "/oauth2/auth"
    async with stepped.client.get(check, headers={"X-Forwarded-Uri": "/secure"}) as resp:
        assert resp.status == 401
        assert 'error="insufficient_claims"' in resp.headers["WWW-Authenticate"]
    async with stepped.client.get(check, headers={"X-Forwarded-Uri": "/"}) as resp:
        assert resp.status == 202
    # The ingress sends the browser to /oauth2/start?rd=...: the target's step-up is asked.
    started = await walk(stepped.client, stepped.url + "/oauth2/start?rd=/secure")
    assert started.status == 200 and "c1" in started.authorize_params()["claims"]
    async with stepped.client.get(check, headers={"X-Forwarded-Uri": "/secure"}) as resp:
        assert resp.status == 202


async def test_a_token_refresh_keeps_the_proof(make_stack: StackFactory,
                                               upstream_url: str) -> None:
    stack = await make_stack({
        "session": {"store": "memory"},
        "upstreams": [
            {"path": "/", "url": upstream_url},
            {"path": "/secure", "url": upstream_url, "access": {"auth_context": ["c1"]}},
        ]})
    stack.mock.auto_user = ALICE
    stack.mock.access_token_lifetime = 60  # inside the refresh window: the next request refreshes
    assert (await walk(stack.client, stack.url + "/secure")).status == 200
    stack.mock.faults.id_token_claims = {"acrs": DELETE}  # the refreshed ID token has none
    result = await walk(stack.client, stack.url + "/secure")
    assert (result.status, result.hops) == (200, [])
    refreshes = [r for r in stack.mock.token_requests if r.get("grant_type") == "refresh_token"]
    assert refreshes and "acrs" not in last_id_token(stack)


async def test_a_bearer_token_must_carry_the_proof_too(make_stack: StackFactory,
                                                       upstream_url: str) -> None:
    config = api_config(upstream_url)
    config["upstreams"].insert(0, {"path": "/secure", "url": upstream_url,
                                   "access": {"auth_context": ["c1"], "require_mfa": True}})
    api = await make_stack(config)
    status, body, challenge = await call(api, api_token(api.mock, api.idp), "/secure")
    assert status == 401 and body["error"] == "step_up_required"
    assert 'error="insufficient_claims"' in challenge and "acrs" in challenge
    no_mfa = api_token(api.mock, api.idp, acrs=["c1"], amr=["pwd"])
    assert (await call(api, no_mfa, "/secure"))[0] == 401
    proven = api_token(api.mock, api.idp, acrs=["c1"], amr=["pwd", "mfa"])
    assert (await call(api, proven, "/secure"))[0] == 200
    assert (await call(api, api_token(api.mock, api.idp), "/"))[0] == 200
