"""Access tokens for an API registered in the mock (the proxy's own `[api]`), as Entra issues
them (learn.microsoft.com "Access token claims reference" and "Microsoft identity platform
and the OAuth 2.0 client credentials flow"):

- The API's `access_token_version` (manifest `requestedAccessTokenVersion`) picks the shape,
  not the endpoint the client used: null/1 gives v1 (`iss` https://{sts host}/{tid}/, `aud`
  the resource as the client named it, App ID URI or GUID, `appid`), 2 gives v2 (`iss` the
  v2 issuer, `aud` always the API's client ID, `azp`).
- Client credentials (`scope=<resource>/.default`): any app in the tenant gets a token, with
  `roles` only for app roles assigned to it, `idtyp` "app", and `oid`/`sub` its service
  principal. Delegated (a user signed in to a client asking for `<resource>/<scope>`): `scp`.
- Delegated `<resource>/.default` (a client's refresh_token grant asking for a token for
  another API, "scopes and permissions": the static permissions): `scp` lists the
  permissions consented for that client; with none, invalid_grant AADSTS65001 with
  `suberror` consent_required (a silent grant cannot ask the user).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from .errors import EntraError
from .keys import b64url, encode_jws
from .state import MockEntra
from .tenants import Tenant
from .users import MockClient, MockUser

_DEFAULT_SUFFIX = "/.default"


def find_api(mock: MockEntra, resource: str) -> MockClient | None:
    """The registration a resource names: one of its App ID URIs, or its client ID."""
    for client in mock.clients.values():
        if resource == client.client_id or resource in client.identifier_uris:
            return client
    return None


def delegated_resource(mock: MockEntra, scopes: tuple[str, ...], caller: str
                       ) -> tuple[MockClient, str, tuple[str, ...]] | None:
    """(API, resource as named, scopes granted) when the scopes ask for a mock-registered
    API's scope; `.default` stands for what client `caller` was granted on that API."""
    for scope in scopes:
        resource, _, name = scope.rpartition("/")
        api = find_api(mock, resource) if resource else None
        if api is None:
            continue
        if name == ".default":
            client = mock.clients.get(caller)
            granted = client.delegated_grants.get(api.client_id, ()) if client else ()
            if not granted:
                raise consent_required(caller, api)
            return api, resource, tuple(f"{resource}/{g}" for g in granted)
        if name in api.api_scopes:
            return api, resource, scopes
    return None


def consent_required(caller: str, api: MockClient) -> EntraError:
    return EntraError("invalid_grant", 65001,
                      f"The user or administrator has not consented to use the application "
                      f"with ID '{caller}' named '{caller}'. Send an interactive authorization "
                      f"request for this user and resource. (resource: {api.client_id})",
                      suberror="consent_required")


def token_lifetime(mock: MockEntra, api: MockClient) -> int:
    """Seconds an access token for `api` lives: its lifetime policy, else the default."""
    return api.access_token_lifetime or mock.access_token_lifetime


def _pairwise(*parts: str) -> str:
    return b64url(hashlib.sha256("\n".join(parts).encode()).digest())


def _claims(mock: MockEntra, api: MockClient, resource: str, *, base: str, tid: str,
            caller: str, now: int) -> dict[str, Any]:
    v2 = api.access_token_version == 2
    claims: dict[str, Any] = {
        "aud": api.client_id if v2 else resource,
        "iss": f"{base}/{tid}/v2.0" if v2 else f"https://{mock.sts_host}/{tid}/",
        "iat": now,
        "nbf": now,
        "exp": now + token_lifetime(mock, api),
        "aio": b64url(secrets.token_bytes(48)),
    }
    claims |= {"azp": caller, "azpacr": "1"} if v2 else {"appid": caller, "appidacr": "1"}
    return claims


def _finish(mock: MockEntra, claims: dict[str, Any], version: str) -> str:
    claims |= {"rh": f"0.A{b64url(secrets.token_bytes(36))}.",
               "uti": b64url(secrets.token_bytes(16)), "ver": version}
    key = mock.keys.current
    # No header nonce: unlike Graph's, these tokens are meant to be verified by the API.
    header = {"typ": "JWT", "alg": "RS256", "x5t": key.kid, "kid": key.kid}
    return encode_jws(header, claims, key.sign_rs256)


def app_only_token(mock: MockEntra, base: str, tenant: Tenant, caller: MockClient,
                   fields: Mapping[str, str]) -> dict[str, Any]:
    """The token response of the client credentials grant."""
    scope = fields.get("scope", "")
    if not scope.endswith(_DEFAULT_SUFFIX) or " " in scope.strip():
        raise EntraError("invalid_scope", 1002012,
                         f"The provided value for scope {scope} is not valid. Client credential "
                         "flows must have a scope value with /.default suffixed to the "
                         "resource identifier (application ID URI).")
    if tenant.tid is None:  # common / organizations name no tenant to issue in
        raise EntraError("invalid_request", 50059,
                         "No tenant-identifying information found in either the request or "
                         "implied by any provided credentials.")
    resource = scope.strip().removesuffix(_DEFAULT_SUFFIX)
    api = find_api(mock, resource)
    if api is None:
        raise EntraError("invalid_resource", 500011,
                         f"The resource principal named {resource} was not found in the "
                         f"tenant named {tenant.tid}.")
    now = int(mock.clock())
    claims = _claims(mock, api, resource, base=base, tid=tenant.tid, caller=caller.client_id,
                     now=now)
    v2 = api.access_token_version == 2
    if not v2:
        claims["idp"] = claims["iss"]  # v1 app tokens name their own issuer as the idp
    claims["idtyp"] = "app"
    claims["oid"] = caller.service_principal_oid
    roles = caller.app_roles.get(api.client_id, ())
    if roles:
        claims["roles"] = list(roles)
    claims |= {"sub": caller.service_principal_oid, "tid": tenant.tid}
    body = {"token_type": "Bearer", "expires_in": token_lifetime(mock, api),
            "ext_expires_in": token_lifetime(mock, api),
            "access_token": _finish(mock, claims, "2.0" if v2 else "1.0")}
    mock.issued.append(body)
    return body


def delegated_token(mock: MockEntra, api: MockClient, resource: str, *, base: str,
                    user: MockUser, caller: str, scopes: tuple[str, ...], now: int) -> str:
    """A user's access token for `api`, asked for by client `caller`."""
    claims = _claims(mock, api, resource, base=base, tid=user.tid, caller=caller, now=now)
    v2 = api.access_token_version == 2
    prefix = f"{resource}/"
    claims["name"] = user.name
    claims["oid"] = user.oid
    if user.roles:
        claims["roles"] = list(user.roles)
    names = [s.removeprefix(prefix) for s in scopes if s.startswith(prefix)]
    claims["scp"] = " ".join(n for n in names if n in api.api_scopes)
    claims["sub"] = _pairwise(api.client_id, user.tid, user.oid)
    claims["tid"] = user.tid
    if v2:
        claims["preferred_username"] = user.username
    else:
        claims |= {"unique_name": user.username, "upn": user.username}
    return _finish(mock, claims, "2.0" if v2 else "1.0")
