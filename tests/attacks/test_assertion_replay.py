"""An identity assertion is good for one route only (issue 17.4): the assertion an open app
receives fails the check docs/upstream-verification.md tells another route's app to make,
on one origin (path routes) and behind one ingress (host routes with preserve_host)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from proxy.config import UpstreamConfig
from proxy.routes import route_audience
from tests.attacks.conftest import ShieldFactory, sign_in
from tests.attacks.harness import Upstream, tally
from tests.conftest import ALICE, Browsers, Stack

FAMILY = "assertion-replay"
ON_ONE_ORIGIN = [{"path": "/app1"}, {"path": "/app2", "access": {"roles": ["Admin"]}}]
BEHIND_ONE_INGRESS = [{"path": "/", "host": "open.example", "preserve_host": True},
                      {"path": "/", "host": "admin.example", "preserve_host": True,
                       "access": {"roles": ["Admin"]}},
                      {"path": "/", "host": "named.example", "preserve_host": True,
                       "assertion_audience": "urn:example:named"}]


async def verify(stack: Stack, token: str, audience: str) -> dict[str, Any]:
    """The check the verification guide gives an upstream (signature, issuer, audience)."""
    async with stack.client.get(stack.url + "/oauth2/jwks") as resp:
        key = jwt.PyJWKSet.from_dict(await resp.json()).keys[0]
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["ES256", "RS256"], audience=audience, issuer=stack.url,
        leeway=30, options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]})
    return claims


@pytest.mark.parametrize("routes,paths,hosts", [
    (ON_ONE_ORIGIN, ["/app1/x", "/app2/x"], [None, None]),
    (BEHIND_ONE_INGRESS, ["/x", "/x", "/x"], ["open.example", "admin.example", "named.example"]),
], ids=["one-origin", "one-ingress"])
async def test_an_assertion_for_one_route_fails_another_routes_check(
        routes: list[dict[str, Any]], paths: list[str], hosts: list[str | None],
        shield: ShieldFactory, browsers: Browsers, upstream: Upstream) -> None:
    stack = await shield({"identity": {"assertion_header": "X-Auth-Assertion"}}, routes=routes)
    alice = await sign_in(stack, ALICE, browsers())
    audiences = [route_audience(UpstreamConfig(**{"url": upstream.url, **r})) for r in routes]
    assert len(set(audiences)) == len(routes)
    assert audiences[-1] == routes[-1].get("assertion_audience", audiences[-1])
    # Alice may open the first route (no role needed); her assertion from it is replayed to
    # every other route's app, which checks its own audience.
    async with alice.get(stack.url + paths[0],
                         headers={"Host": hosts[0]} if hosts[0] else {}) as resp:
        assert resp.status == 200
    token = upstream.seen[-1].values("X-Auth-Assertion")[0]
    assert (await verify(stack, token, audiences[0]))["sub"]  # its own route: fine
    for audience in audiences[1:]:
        try:
            await verify(stack, token, audience)
            accepted = True
        except jwt.InvalidAudienceError:
            accepted = False
        tally(FAMILY, refused=not accepted, crashed=False, reached=accepted)
        assert not accepted, audience
    for path, host, audience in zip(paths[2:], hosts[2:], audiences[2:], strict=True):
        async with alice.get(stack.url + path, headers={"Host": host} if host else {}) as resp:
            assert resp.status == 200  # a configured audience is what the app receives
        own = upstream.seen[-1].values("X-Auth-Assertion")[0]
        assert (await verify(stack, own, audience))["aud"] == audience


def test_the_default_audience_names_the_route() -> None:
    url = "http://app.internal:8080/base"
    assert route_audience(UpstreamConfig(url=url)) == "http://app.internal:8080"
    assert route_audience(UpstreamConfig(url=url, path="/app2/")) == \
        "http://app.internal:8080/app2"
    assert route_audience(UpstreamConfig(url=url, path="/BOX/")) == \
        "http://app.internal:8080/BOX"  # only the trailing slash goes
    assert route_audience(UpstreamConfig(url=url, path="/app2", host="A.example")) == \
        "http://app.internal:8080/app2?host=a.example"
    assert route_audience(UpstreamConfig(url=url, assertion_audience="urn:x")) == "urn:x"
