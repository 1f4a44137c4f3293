"""Groups overage: when the ID token says "too many groups", ask Microsoft Graph.

Entra drops `groups` above 200 and sends `_claim_names.groups` (or `hasgroups`) instead.
A user is never treated as groupless: if Graph cannot answer, the sign-in fails.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from yarl import URL

from ..config import AzureConfig
from ..errors import IdPFailure, IdPTimeout, IdPUnavailable
from .discovery import Metadata

MAX_PAGES = 50  # 999 per page: far beyond any real membership, and a bound on a hostile loop
_GRAPH_BY_LOGIN_HOST = {
    "login.microsoftonline.com": "https://graph.microsoft.com",
    "login.microsoftonline.us": "https://graph.microsoft.us",
    "login.partner.microsoftonline.cn": "https://microsoftgraph.chinacloudapi.cn",
    "login.chinacloudapi.cn": "https://microsoftgraph.chinacloudapi.cn",
    "login.windows.net": "https://graph.microsoft.com",
    "login.usgovcloudapi.net": "https://graph.microsoft.us",
}


def has_overage(claims: dict[str, Any]) -> bool:
    names = claims.get("_claim_names")
    return (isinstance(names, dict) and "groups" in names) or claims.get("hasgroups") is True


# The Graph hosts Entra's discovery documents name (global, US Gov L4/L5, China). The user's
# access token goes to this host, so a document naming any other is refused.
_GRAPH_HOSTS = frozenset({"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us",
                          "microsoftgraph.chinacloudapi.cn"})


def graph_base(azure: AzureConfig, metadata: Metadata) -> str:
    """`graph_url`, else discovery's `msgraph_host`, else the cloud's well-known Graph host.

    Discovery's host must be a Microsoft Graph host, or the cloud instance's own authority
    (a sovereign or test IdP that serves Graph itself): a document naming another host would
    send every overage user's access token there, so it is refused (IdPFailure).
    """
    if azure.graph_url:
        return azure.graph_url.rstrip("/")
    cloud = URL(azure.cloud_instance)
    host = metadata.msgraph_host.lower()
    if host:
        if host not in _GRAPH_HOSTS and host != cloud.raw_authority.lower():
            raise IdPFailure("The sign-in service's discovery document names a Graph host that "
                             "is not Microsoft Graph; set [azure] graph_url if it is intended.")
        return f"{cloud.scheme}://{host}"
    return _GRAPH_BY_LOGIN_HOST.get(cloud.host or "", "https://graph.microsoft.com")


async def member_groups(http: aiohttp.ClientSession, base: str, access_token: str,
                        timeout: aiohttp.ClientTimeout) -> list[str]:
    """Transitive group ids of the signed-in user (paged /me/transitiveMemberOf)."""
    url: str | None = f"{base}/v1.0/me/transitiveMemberOf?$select=id&$top=999"
    # No `ConsistencyLevel: eventual`: that header sends the query to Graph's advanced-query
    # index, which lags directory changes; a plain listing reads the directory itself.
    headers = {"Authorization": f"Bearer {access_token}"}
    groups: list[str] = []
    for _ in range(MAX_PAGES):
        if url is None:
            return groups
        if URL(url).origin() != URL(base).origin():
            raise IdPFailure("Microsoft Graph sent a next page on another host.")
        page = await _get(http, url, headers, timeout)
        for entry in page.get("value") or []:
            if isinstance(entry, dict) and entry.get("@odata.type") == "#microsoft.graph.group":
                groups.append(str(entry.get("id")))
        next_link = page.get("@odata.nextLink")
        url = next_link if isinstance(next_link, str) else None
    raise IdPFailure("Microsoft Graph returned too many pages of groups.")


async def _get(http: aiohttp.ClientSession, url: str, headers: dict[str, str],
               timeout: aiohttp.ClientTimeout) -> dict[str, Any]:
    try:
        async with http.get(url, headers=headers, timeout=timeout) as resp:
            if resp.status != 200:
                raise IdPFailure(f"Microsoft Graph could not list your groups (HTTP {resp.status});"
                                 " sign-in stopped rather than continue without them.")
            body = await resp.json(content_type=None)
    except TimeoutError:
        raise IdPTimeout("Microsoft Graph did not answer in time.") from None
    except aiohttp.ClientError:
        raise IdPUnavailable("Microsoft Graph is unreachable.") from None
    except ValueError:
        raise IdPFailure("Microsoft Graph's answer is not JSON.") from None
    if not isinstance(body, dict):
        raise IdPFailure("Microsoft Graph's answer is not a JSON object.")
    return body
