"""The v1 authority: the issuer of v1 access tokens and the key set that signs them.

An API whose `accessTokenAcceptedVersion` is null or 1 gets v1 tokens. Their issuer is
`https://{sts host}/{tid}/`, and the STS host differs per cloud (sts.windows.net in the
global cloud, sts.chinacloudapi.cn for Azure operated by 21Vianet). Rather than keep a
table that is wrong for the next cloud, the proxy asks the cloud itself: the v1 discovery
document (`{authority}/.well-known/openid-configuration`, no v2.0) names the v1 issuer and
the v1 keys (`/common/discovery/keys`, or the tenant's). v1 tokens are checked against
those keys only. Fetched on the first v1 token, then cached like the v2 document.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from yarl import URL

from ..config import AzureConfig
from ..errors import IdPFailure
from ..validators import is_guid
from .discovery import TEMPLATE
from .jwks import KeySet

TTL = 24 * 3600.0  # as the v2 document and keys
REFETCH_INTERVAL = 10.0  # an unknown kid refetches the v1 keys at most this often
_ISSUER = re.compile(r"https://[a-z0-9.-]+/(?P<tid>[^/]+)/")

GetJson = Callable[[str, str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class V1Metadata:
    issuer: str  # https://{sts host}/{tid or the {tenantid} template}/
    jwks_uri: str


def v1_discovery_url(azure: AzureConfig) -> str:
    return f"{azure.authority}/.well-known/openid-configuration"


def parse_v1_metadata(azure: AzureConfig, doc: Any) -> V1Metadata:
    """The v1 issuer and keys; IdPFailure when the document cannot be this cloud's."""
    if not isinstance(doc, dict) or not all(
            isinstance(doc.get(k), str) and doc[k] for k in ("issuer", "jwks_uri")):
        raise IdPFailure("The v1 discovery document lacks issuer or jwks_uri.")
    issuer, jwks_uri = doc["issuer"], doc["jwks_uri"]
    match = _ISSUER.fullmatch(issuer)
    tid = match["tid"] if match else ""
    if not (tid == TEMPLATE or is_guid(tid)):
        raise IdPFailure(f"Refusing the v1 discovery issuer {issuer!r}: not https://<host>/"
                         "<tenant>/.")
    if is_guid(azure.tenant_id) and tid.lower() != azure.tenant_id.lower():
        raise IdPFailure(f"Refusing the v1 discovery issuer {issuer!r}: another tenant.")
    # Keys come from the configured cloud, as the v2 document's must.
    if URL(jwks_uri).origin() != URL(azure.cloud_instance).origin():
        raise IdPFailure("Refusing the v1 discovery document: jwks_uri is not on "
                         f"{URL(azure.cloud_instance).origin()}.")
    return V1Metadata(issuer=issuer, jwks_uri=jwks_uri)


class V1Authority:
    """Caches the v1 document and keys; owned by the EntraClient (one per config)."""

    def __init__(self, azure: AzureConfig, get_json: GetJson) -> None:
        self._azure = azure
        self._get_json = get_json
        self._metadata: tuple[float, V1Metadata] | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._last_forced = -REFETCH_INTERVAL

    async def metadata(self) -> V1Metadata:
        cached = self._metadata
        if cached and time.monotonic() - cached[0] < TTL:
            return cached[1]
        doc = await self._get_json(v1_discovery_url(self._azure), "v1 discovery document")
        metadata = parse_v1_metadata(self._azure, doc)
        self._metadata = (time.monotonic(), metadata)
        return metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        cached = self._keys
        now = time.monotonic()
        if cached and not refresh and now - cached[0] < TTL:
            return cached[1]
        if cached and refresh:
            if now - self._last_forced < REFETCH_INTERVAL:
                return cached[1]  # a flood of unknown kids costs Entra one fetch per interval
            self._last_forced = now
        metadata = await self.metadata()
        keyset = KeySet.parse(await self._get_json(metadata.jwks_uri, "v1 key set (JWKS)"))
        self._keys = (time.monotonic(), keyset)
        return keyset
