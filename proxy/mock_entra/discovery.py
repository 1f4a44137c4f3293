"""Discovery document and JWKS, byte-compatible in shape with Entra's (ENTRA.md §1)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from .errors import EntraError, json_error, unknown_tenant
from .state import MOCK, issuer_base, origin
from .tenants import TENANT_PLACEHOLDER, Tenant

# Stands in for "microsoftonline.com"; the proxy must compare it with each key's value.
CLOUD_INSTANCE_NAME: Final = "mock.local"
DISCOVERY_CACHE_CONTROL: Final = "max-age=86400, private"
CLAIMS_SUPPORTED: Final = tuple(
    "sub iss cloud_instance_name cloud_instance_host_name cloud_graph_host_name msgraph_host"
    " aud exp iat auth_time acr nonce preferred_username name tid ver at_hash c_hash email".split()
)


def discovery_document(base: str, tenant: Tenant, issuer: str) -> dict[str, Any]:
    """Key order as Entra serves it; tenant documents add kerberos_endpoint."""
    endpoints = f"{base}/{tenant.canonical}"
    document: dict[str, Any] = {
        "token_endpoint": f"{endpoints}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{endpoints}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{endpoints}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{endpoints}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{endpoints}/oauth2/v2.0/logout",
        "claims_supported": list(CLAIMS_SUPPORTED),
    }
    if tenant.kind == "tenant":
        document["kerberos_endpoint"] = f"{endpoints}/kerberos"
    document |= {
        "tenant_region_scope": "WW" if tenant.kind == "tenant" else None,
        "cloud_instance_name": CLOUD_INSTANCE_NAME,
        "cloud_graph_host_name": "graph.windows.net",
        # Graph is served by the mock itself, so its host is the request's authority.
        "msgraph_host": base.split("://", 1)[1],
        "rbac_url": "https://pas.windows.net",
    }
    return document


def _failure(status: int, base: str, now: float) -> web.Response:
    err = EntraError("temporarily_unavailable", 90033, "Injected fault.", status=status)
    return json_error(err, base, now)


def _tenant_or_error(request: web.Request) -> Tenant | web.Response:
    """The tenant a discovery request names, or the error Entra answers instead (an injected
    outage, or an unknown tenant)."""
    mock = request.app[MOCK]
    base, now = origin(request), mock.clock()
    if mock.faults.discovery_status is not None:
        return _failure(mock.faults.discovery_status, base, now)
    segment = request.match_info["tenant"]
    tenant = mock.resolve_tenant(segment)
    if tenant is None:
        return json_error(unknown_tenant(segment), base, now)
    return tenant


async def openid_configuration(request: web.Request) -> web.Response:
    mock = request.app[MOCK]
    base = origin(request)
    tenant = _tenant_or_error(request)
    if isinstance(tenant, web.Response):
        return tenant
    issuer = mock.faults.discovery_issuer or tenant.issuer(issuer_base(request))
    document = discovery_document(base, tenant, issuer)
    if mock.faults.discovery_msgraph_host is not None:
        document["msgraph_host"] = mock.faults.discovery_msgraph_host
    return web.json_response(
        document,
        headers={"Cache-Control": DISCOVERY_CACHE_CONTROL},
    )


async def jwks(request: web.Request) -> web.Response:
    """Keys carry the tenant's issuer: the `{tenantid}` template on common/organizations.

    `?appid=<client_id>` adds the app-specific key of a claims-mapping app; without it, that
    key is never published.
    """
    mock = request.app[MOCK]
    base, now = origin(request), mock.clock()
    if mock.faults.jwks_status is not None:
        return _failure(mock.faults.jwks_status, base, now)
    if mock.faults.jwks_redirect is not None:
        raise web.HTTPFound(mock.faults.jwks_redirect)
    if "/v2.0/" not in request.path and mock.faults.v1_jwks_status is not None:
        return _failure(mock.faults.v1_jwks_status, base, now)
    segment = request.match_info["tenant"]
    tenant = mock.resolve_tenant(segment)
    if tenant is None:
        return json_error(unknown_tenant(segment), base, now)
    client = mock.clients.get(request.query.get("appid", ""))
    document = mock.keys.jwks(
        issuer=mock.faults.jwks_issuer or tenant.issuer(issuer_base(request)),
        cloud_instance_name=mock.faults.jwks_cloud_instance_name or CLOUD_INSTANCE_NAME,
        with_kid=not mock.faults.jwks_without_kid,
        app_key=mock.keys.app_key(client.client_id) if client and client.app_signing_key else None,
    )
    return web.json_response(document, headers={"Cache-Control": DISCOVERY_CACHE_CONTROL})


async def v1_openid_configuration(request: web.Request) -> web.Response:
    """The v1 document (no /v2.0 in the path): v1 tokens' issuer and their key set.

    Its issuer is the cloud's STS host (`sts.windows.net` in the global cloud), with the
    `{tenantid}` template on common/organizations, and its keys are `/{tenant}/discovery/keys`
    (`/common/discovery/keys` for the multi-tenant segments), as Entra serves them.
    """
    mock = request.app[MOCK]
    base = origin(request)
    tenant = _tenant_or_error(request)
    if isinstance(tenant, web.Response):
        return tenant
    endpoints = f"{base}/{tenant.canonical}"
    keys = f"{base}/{tenant.canonical if tenant.kind == 'tenant' else 'common'}/discovery/keys"
    document = {
        "token_endpoint": f"{endpoints}/oauth2/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                  "client_secret_basic"],
        "jwks_uri": keys,
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token",
                                     "token"],
        "scopes_supported": ["openid"],
        "issuer": f"https://{mock.sts_host}/{tenant.tid or TENANT_PLACEHOLDER}/",
        "authorization_endpoint": f"{endpoints}/oauth2/authorize",
        "end_session_endpoint": f"{endpoints}/oauth2/logout",
        "cloud_instance_name": CLOUD_INSTANCE_NAME,
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": base.split("://", 1)[1],
    }
    return web.json_response(document, headers={"Cache-Control": DISCOVERY_CACHE_CONTROL})
