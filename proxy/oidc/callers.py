"""Which callers of the proxy's API count: `[api] allowed_client_ids`, `required_scopes`
and `required_app_roles` (issue 17 item 3).

Entra issues a client-credentials token for any API in a tenant to any app in that tenant,
and a delegated token to any client a user consents to: a valid signature and the right
`aud` only say "Entra issued this for us", not "this caller was meant to get in". So the
calling client (v2 `azp`, v1 `appid`) must be one the operator listed, like App Service's
allowed client applications, and a scope or app role can be required on top.
"""

from __future__ import annotations

from typing import Any

from ..config import ApiConfig


def is_app_token(claims: dict[str, Any]) -> bool:
    """An app-only token (no user): Entra's `idtyp` says "app", or there is no `scp`.

    Delegated tokens always carry `scp` ("Access token claims reference"), so a token
    without one is treated as an app's whatever else it says: never an app as a user.
    """
    scp = claims.get("scp")
    return claims.get("idtyp") == "app" or not (isinstance(scp, str) and scp.strip())


def calling_client(claims: dict[str, Any]) -> str:
    client = claims.get("azp") or claims.get("appid")
    return client if isinstance(client, str) else ""


def caller_problem(claims: dict[str, Any], api: ApiConfig) -> str | None:
    """Why this validated token's caller may not use the API; None when it may."""
    client = calling_client(claims).lower()
    if not client or client not in {c.lower() for c in api.allowed_client_ids}:
        return "the calling application is not one of the API's allowed clients"
    if is_app_token(claims):
        roles = claims.get("roles")
        held = {r for r in roles if isinstance(r, str)} if isinstance(roles, list) else set()
        if api.required_app_roles and held.isdisjoint(api.required_app_roles):
            return "the calling application holds none of the API's required app roles"
        return None
    scopes = set(str(claims["scp"]).split())
    if api.required_scopes and scopes.isdisjoint(api.required_scopes):
        return "the token carries none of the API's required scopes"
    return None
