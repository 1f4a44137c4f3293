"""Access tokens for the proxy's own API, asked of the mock Entra ID over its real endpoints,
as an API client would: client credentials (app-only) or a user's authorization code
(delegated)."""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
from yarl import URL

from proxy.mock_entra import DEFAULT_TENANT_ID, MockEntra

REDIRECT_URI = "http://127.0.0.1/callback/azuread"  # registered for the mock's clients


async def app_token(idp: str, client_id: str, secret: str, resource: str,
                    tenant: str = DEFAULT_TENANT_ID) -> str:
    """Client credentials: `scope=<resource>/.default`, as a daemon asks."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{idp}/{tenant}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": client_id,
                  "client_secret": secret, "scope": f"{resource}/.default"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["access_token"])


async def user_token(mock: MockEntra, idp: str, client_id: str, secret: str, user: str,
                     scope: str, tenant: str = DEFAULT_TENANT_ID) -> str:
    """`user` signs in to client `client_id`, which asks for `scope` (e.g.
    api://<api>/access_as_user) and redeems the code."""
    mock.auto_user = user
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{idp}/{tenant}/oauth2/v2.0/authorize", allow_redirects=False,
                            params={"client_id": client_id, "response_type": "code",
                                    "redirect_uri": REDIRECT_URI,
                                    "scope": f"openid {scope}"}) as resp:
            assert resp.status == 302, await resp.text()
            code = URL(resp.headers["Location"]).query["code"]
        async with http.post(f"{idp}/{tenant}/oauth2/v2.0/token", data={
                "grant_type": "authorization_code", "client_id": client_id,
                "client_secret": secret, "code": code, "redirect_uri": REDIRECT_URI}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return str(body["access_token"])


def claims_of(token: str) -> dict[str, Any]:
    """The payload, unverified: to show what the mock issued, never to trust it."""
    return dict(jwt.decode(token, options={"verify_signature": False}))
