"""A managed identity as the app's federated credential: the platform's managed identity
endpoint issues a token for api://AzureADTokenExchange, which becomes the client assertion.

Two forms, as Azure Identity's ManagedIdentityCredential speaks them:

* IMDS (VMs, AKS nodes): `GET {imds_url}?api-version=2018-02-01&resource=...` with
  `Metadata: true`;
* App Service and Container Apps (`identity_header` set, from IDENTITY_HEADER, the URL from
  IDENTITY_ENDPOINT): `?api-version=2019-08-01&resource=...` with `X-IDENTITY-HEADER`.

A user-assigned identity adds `client_id`. The token is cached until REFRESH_BEFORE seconds
before its `expires_on` (or `expires_in`); concurrent requests share one fetch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Final

import aiohttp

from ..errors import CredentialUnavailable
from .credentials import ASSERTION_TYPE

EXCHANGE_AUDIENCE: Final = "api://AzureADTokenExchange"
REFRESH_BEFORE: Final = 300.0  # refetch this long before the token expires
MAX_RESPONSE_BYTES: Final = 64 * 1024
IMDS_VERSION: Final = "2018-02-01"
APP_SERVICE_VERSION: Final = "2019-08-01"


class ManagedIdentityCredential:
    kind = "managed_identity"

    def __init__(self, url: str, *, client_id: str = "", identity_header: str = "",
                 timeout: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.client_id = client_id
        self._header = identity_header
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._cached: tuple[str, float] | None = None  # (token, expires_on)
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ManagedIdentityCredential({self.url!r}, client_id={self.client_id!r})"

    @property
    def form(self) -> str:
        return "App Service" if self._header else "IMDS"

    async def fields(self, http: aiohttp.ClientSession, client_id: str,
                     token_url: str) -> dict[str, str]:
        return {"client_id": client_id, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": await self.token(http)}

    async def probe(self, http: aiohttp.ClientSession) -> None:
        await self.token(http)

    def check_files(self) -> None:
        return None

    async def token(self, http: aiohttp.ClientSession) -> str:
        """The cached token, or a new one when it is within REFRESH_BEFORE of expiring."""
        cached = self._cached
        if cached is not None and self._fresh(cached):
            return cached[0]
        async with self._lock:
            if self._cached is not None and self._cached is not cached \
                    and self._fresh(self._cached):
                return self._cached[0]  # another request fetched it while this one waited
            self._cached = await self._fetch(http)
            return self._cached[0]

    def _fresh(self, cached: tuple[str, float]) -> bool:
        return self._clock() < cached[1] - REFRESH_BEFORE

    async def _fetch(self, http: aiohttp.ClientSession) -> tuple[str, float]:
        params = {"api-version": APP_SERVICE_VERSION if self._header else IMDS_VERSION,
                  "resource": EXCHANGE_AUDIENCE}
        if self.client_id:
            params["client_id"] = self.client_id
        headers = {"X-IDENTITY-HEADER": self._header} if self._header else {"Metadata": "true"}
        where = f"the {self.form} managed identity endpoint {self.url}"
        try:
            async with http.get(self.url, params=params, headers=headers,
                                timeout=self._timeout, allow_redirects=False) as resp:
                status = resp.status
                body = await resp.content.read(MAX_RESPONSE_BYTES + 1)
        except TimeoutError:
            raise CredentialUnavailable("the managed identity endpoint did not answer in time",
                                        f"{where} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise CredentialUnavailable("the managed identity endpoint is unreachable",
                                        f"{where} is unreachable ({type(exc).__name__})") \
                from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise CredentialUnavailable("the managed identity endpoint's answer is too large",
                                        f"{where} answered more than {MAX_RESPONSE_BYTES} bytes")
        doc = _json(body)
        if status != 200:
            raise CredentialUnavailable(
                f"the managed identity endpoint answered HTTP {status}",
                f"{where} answered HTTP {status}{_error_text(doc)}")
        return self._parse(doc, where)

    def _parse(self, doc: Any, where: str) -> tuple[str, float]:
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise CredentialUnavailable("the managed identity endpoint sent no token",
                                        f"{where} answered without an access_token")
        expires = _seconds(doc.get("expires_on"))
        if expires is None and (lifetime := _seconds(doc.get("expires_in"))) is not None:
            expires = self._clock() + lifetime
        if expires is None:
            raise CredentialUnavailable("the managed identity endpoint sent no expiry",
                                        f"{where} answered without expires_on or expires_in")
        return token, expires


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # UnicodeDecodeError too
        return None


def _error_text(doc: Any) -> str:
    """`: error (description)` from an error answer; the platform's words, cut short."""
    if not isinstance(doc, dict):
        return ""
    error = str(doc.get("error") or "")[:60]
    description = str(doc.get("error_description") or "").splitlines()
    text = description[0][:200] if description else ""
    return f": {error}" + (f" ({text})" if text else "") if error or text else ""


def _seconds(value: object) -> float | None:
    """IMDS and App Service 2019-08-01 write epoch seconds (and lifetimes) as strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().isdigit():
        return float(value.strip())
    return None
