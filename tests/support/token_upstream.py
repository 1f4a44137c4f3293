"""An upstream that, like Grafana's JWT auth, believes only a valid Entra access token for
its own API: pyjwt checks signature (the mock's JWKS), issuer, audience and expiry. Plus the
API's app registration in the mock, and a proxy config that passes the token on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, MockEntra
from proxy.mock_entra.users import MockClient
from tests.conftest import ALICE, Stack, StackFactory

API_ID = "a9100000-0000-4000-8000-0000000a9100"  # the upstream API's app registration
API_URI = "api://grafana.contoso.example"
API_SCOPE = "user_impersonation"
JSON = {"Accept": "application/json"}


def register_api(mock: MockEntra, *, granted: bool = True, lifetime: int | None = None) -> None:
    """The upstream's API in the tenant; `granted`: the proxy's app holds its permission
    with consent; `lifetime`: a token lifetime policy on the API (seconds)."""
    mock.clients[API_ID] = MockClient(
        client_id=API_ID, client_secret="api-secret", redirect_uris=[],
        identifier_uris=(API_URI,), api_scopes=(API_SCOPE,), access_token_version=2,
        access_token_lifetime=lifetime)
    grants = mock.clients[DEFAULT_CLIENT_ID].delegated_grants
    if granted:
        grants[API_ID] = (API_SCOPE,)
    else:
        grants.pop(API_ID, None)


def token_config(upstream: str, store: str, redis_url: str = "") -> dict[str, Any]:
    return {"azure": {"upstream_scopes": [f"{API_URI}/.default"]},
            "session": {"store": store, "redis_url": redis_url or "redis://127.0.0.1:6379/0"},
            "upstreams": [{"path": "/", "url": upstream, "public": ["^/healthz$"],
                           "pass_authorization_header": True}]}


class TokenUpstream:
    """Answers 200 with the token's claims, or 401 saying why; records every Authorization
    it was sent (`seen`, one list per request)."""

    def __init__(self, idp: str) -> None:
        self.idp = idp
        self.seen: list[list[str]] = []
        self._keys: jwt.PyJWKSet | None = None

    async def keys(self) -> jwt.PyJWKSet:
        if self._keys is None:
            async with aiohttp.ClientSession() as http, http.get(
                    f"{self.idp}/{DEFAULT_TENANT_ID}/discovery/v2.0/keys") as resp:
                self._keys = jwt.PyJWKSet.from_dict(await resp.json())
        return self._keys

    def validate(self, token: str, keys: jwt.PyJWKSet) -> dict[str, Any]:
        kid = jwt.get_unverified_header(token).get("kid", "")
        key = next((k for k in keys.keys if k.key_id == kid), None)
        if key is None:
            raise jwt.InvalidTokenError("unknown kid")
        return dict(jwt.decode(token, key.key, algorithms=["RS256"], audience=API_ID,
                               issuer=f"{self.idp}/{DEFAULT_TENANT_ID}/v2.0",
                               options={"require": ["exp", "iat", "iss", "aud"]}))

    async def handle(self, request: web.Request) -> web.Response:
        values = request.headers.getall("Authorization", [])
        self.seen.append(list(values))
        if request.path == "/healthz":
            return web.json_response({"authorization": values})
        if len(values) != 1 or not values[0].startswith("Bearer "):
            return web.json_response({"error": "no bearer token"}, status=401)
        try:
            claims = self.validate(values[0].removeprefix("Bearer "), await self.keys())
        except jwt.InvalidTokenError as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=401)
        return web.json_response({"claims": claims})


@pytest.fixture
async def token_upstream(mock_server: tuple[MockEntra, str]
                         ) -> AsyncIterator[tuple[TokenUpstream, str]]:
    upstream = TokenUpstream(mock_server[1])
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield upstream, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture(params=["memory", "redis"])
async def token_stack(request: pytest.FixtureRequest, make_stack: StackFactory, redis_url: str,
                      token_upstream: tuple[TokenUpstream, str]) -> Stack:
    """A proxy whose route gets the API token (memory and Redis stores), the API registered."""
    made = await make_stack(token_config(token_upstream[1], request.param, redis_url))
    register_api(made.mock)
    return made


def api_grants(mock: MockEntra) -> int:
    """Token requests the proxy made for the upstream API."""
    return sum(1 for r in mock.token_requests if API_URI in r.get("scope", ""))


async def sign_in(stack: Stack, user: str = ALICE) -> None:
    """Sign in without a protected request (which would already fetch the token)."""
    stack.mock.auto_user = user
    async with stack.client.get(stack.url + "/oauth2/start?rd=/healthz") as resp:
        assert resp.status == 200 and resp.url.path == "/healthz"


async def get(stack: Stack, path: str = "/dashboards", **headers: str) -> tuple[int, Any]:
    async with stack.client.get(stack.url + path, headers={**JSON, **headers}) as resp:
        return resp.status, await resp.json()
