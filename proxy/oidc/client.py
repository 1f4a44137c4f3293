"""Talks to Entra: discovery and JWKS (cached), the authorize URL, the code exchange.

The only module that imports authlib; all HTTP goes through the app's ClientSession.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from yarl import URL

from ..config import AzureConfig, Config
from ..errors import (
    ConfigError,
    IdPFailure,
    IdPTimeout,
    IdPUnavailable,
    LoginRejected,
    ProxyError,
    TokenRejected,
)
from ..step_up import StepUp
from . import aadsts
from .bearer import BearerRejected, is_v1_token, validate_access_token
from .client_auth import ClientCredential, build_credential
from .contracts import IdPMetrics, NoMetrics, PkceLogin
from .credentials import CredentialError
from .discovery import Metadata, discovery_url, parse_metadata
from .graph import graph_base, has_overage, member_groups
from .jwks import KeySet, UnknownKey
from .tokens import validate_id_token
from .v1 import V1Authority

# Token-endpoint errors that mean "this grant is over": sign the user in again.
METADATA_TTL = 24 * 3600.0  # Microsoft: recheck keys every 24 h
REFETCH_INTERVAL = 10.0  # an unknown kid refetches the JWKS at most this often


def load_credential(azure: AzureConfig) -> ClientCredential:
    """The app's client credential; an unusable certificate is a config error. A federated
    token or managed identity is not touched here: check_files and each token request do."""
    try:
        return build_credential(azure)
    except CredentialError as exc:
        raise ConfigError([f"azure.client_certificate_file: {exc}"]) from None


class EntraClient:
    def __init__(self, config: Config, http: aiohttp.ClientSession,
                 credential: ClientCredential | None = None,
                 metrics: IdPMetrics | None = None) -> None:
        self.metrics: IdPMetrics = metrics or NoMetrics()
        self.config = config
        self.azure = config.azure
        self.credential = credential or build_credential(config.azure)
        self.http = http
        self.timeout = aiohttp.ClientTimeout(total=config.azure.timeout)
        self._metadata: tuple[float, Metadata] | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._lock = asyncio.Lock()
        self._last_forced = -REFETCH_INTERVAL
        self.last_error = ""
        self._authorize_prefix: tuple[str, str] | None = None  # (endpoint, encoded base)
        self.v1 = V1Authority(self.azure, self._get_json)  # v1 API tokens' issuer and keys

    async def _get_json(self, url: str, what: str) -> Any:
        try:
            # Never redirected: the metadata's origins are checked, not a Location's.
            async with self.http.get(url, timeout=self.timeout, allow_redirects=False) as resp:
                if resp.status in (502, 503, 504):
                    raise IdPUnavailable(f"The sign-in service's {what} is unavailable "
                                         f"(HTTP {resp.status}).")
                if resp.status != 200:  # Entra's JSON error: its AADSTS code and our fix
                    text = (await resp.content.read(1 << 16)).decode("utf-8", "replace")
                    raise aadsts.fetch_refusal(what, resp.status, text, self.config)
                return await resp.json(content_type=None)
        except TimeoutError:
            raise IdPTimeout(f"The sign-in service's {what} did not answer in time.") from None
        except aiohttp.ClientError:
            raise IdPUnavailable(f"The sign-in service's {what} is unreachable.") from None
        except ValueError:
            raise IdPFailure(f"The sign-in service's {what} is not JSON.") from None

    async def metadata(self) -> Metadata:
        cached = self._metadata
        if cached and time.monotonic() - cached[0] < METADATA_TTL:
            return cached[1]
        async with self._lock:
            if self._metadata is cached or self._metadata is None:
                try:
                    doc = await self._get_json(discovery_url(self.azure), "discovery document")
                    self._metadata = (time.monotonic(), parse_metadata(self.azure, doc))
                    self.last_error = ""
                except IdPFailure as exc:
                    self.last_error = exc.public
                    raise
                except (IdPUnavailable, IdPTimeout) as exc:
                    self.last_error = exc.public
                    if cached is None:
                        raise
                    return cached[1]  # a stale document beats none while Entra is away
            return self._metadata[1]

    async def keys(self, *, refresh: bool = False) -> KeySet:
        cached = self._keys
        now = time.monotonic()
        if cached and not refresh and now - cached[0] < METADATA_TTL:
            return cached[1]
        if cached and refresh and now - self._last_forced < REFETCH_INTERVAL:
            return cached[1]  # a flood of unknown kids costs Entra one fetch per interval
        metadata = await self.metadata()
        async with self._lock:
            if self._keys is not cached and self._keys is not None:
                return self._keys[1]
            previous_forced = self._last_forced
            if refresh:
                self._last_forced = now
            try:
                keyset = KeySet.parse(await self._get_json(self._jwks_url(metadata),
                                                           "key set (JWKS)"))
            except (IdPUnavailable, IdPTimeout):
                self.metrics.jwks_fetched("unavailable")
                if cached is None or refresh:
                    # A token names a key we lack and Entra cannot tell us about it: that is
                    # "try again later" (503), not "your token is bad", and the failed
                    # attempt must not hold back the next one.
                    self._last_forced = previous_forced
                    raise
                return cached[1]  # keep verifying with the keys we have
            except IdPFailure:
                self.metrics.jwks_fetched("failed")
                raise
            self.metrics.jwks_fetched("ok")
            self._keys = (time.monotonic(), keyset)
            return keyset

    def _jwks_url(self, metadata: Metadata) -> str:
        """A claims-mapping app's key is published only with ?appid=<client_id>."""
        if not self.azure.app_signing_keys:
            return metadata.jwks_uri
        return str(URL(metadata.jwks_uri).update_query(appid=self.azure.client_id))

    async def authorize_url(self, login: PkceLogin, prompt: str | None = None,
                            step_up: StepUp | None = None) -> str:
        metadata = await self.metadata()
        params = {"state": login.state, "response_mode": "query", "nonce": login.nonce,
                  "code_challenge": create_s256_code_challenge(login.verifier),
                  "code_challenge_method": "S256"}
        if step_up:  # a route's step-up: claims (acrs) and max_age
            params.update(step_up.authorize_params())
        if prompt or self.azure.prompt:
            params["prompt"] = prompt or self.azure.prompt
        if self.azure.domain_hint:
            params["domain_hint"] = self.azure.domain_hint
        # The fixed part is encoded once per endpoint (authlib's prepare_grant_uri re-encoded
        # it on every sign-in: a third of the unauthenticated redirect's CPU), and values
        # that need no escaping (the random base64url ones) are not run through quote_plus.
        query = "&".join(f"{name}={_query_value(value)}" for name, value in params.items())
        return f"{self._authorize_base(metadata.authorization_endpoint)}&{query}"

    def _authorize_base(self, endpoint: str) -> str:
        cached = self._authorize_prefix
        if cached is not None and cached[0] == endpoint:
            return cached[1]
        fixed = urlencode({"response_type": "code", "client_id": self.azure.client_id,
                           "redirect_uri": self.config.redirect_uri,
                           "scope": " ".join(self.azure.scopes)})
        base = f"{endpoint}{'&' if '?' in endpoint else '?'}{fixed}"
        self._authorize_prefix = (endpoint, base)
        return base

    async def redeem(self, code: str, login: PkceLogin) -> dict[str, Any]:
        """Exchange the authorization code; returns the token response."""
        body = await self._token_request({
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": self.config.redirect_uri, "code_verifier": login.verifier,
        })
        if not isinstance(body.get("id_token"), str):
            raise IdPFailure("The token endpoint's answer has no ID token.")
        return body

    async def refresh(self, refresh_token: str,
                      scopes: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The refresh_token grant, for the sign-in scopes or (`scopes`) another API's
        token; TokenRejected when Entra says the grant is dead or lacks consent."""
        try:
            body = await self._token_request(
                {"grant_type": "refresh_token", "refresh_token": refresh_token}, scopes)
        except TokenRejected:
            self.metrics.token_refreshed("rejected")
            raise
        except ProxyError:
            self.metrics.token_refreshed("failed")
            raise
        self.metrics.token_refreshed("ok")
        return body

    async def app_token(self, scope: str) -> dict[str, Any]:
        """The client credentials grant for `scope` (`doctor` probes the credential with it):
        the same client authentication as every other token request of the proxy."""
        return await self._token_request({"grant_type": "client_credentials"}, (scope,))

    async def _token_request(self, grant: dict[str, str],
                             scopes: tuple[str, ...] | None = None) -> dict[str, Any]:
        metadata = await self.metadata()
        form = {**grant, "scope": " ".join(self.azure.scopes if scopes is None else scopes),
                **await self.credential.fields(self.http, self.azure.client_id,
                                               metadata.token_endpoint)}
        try:
            # Never redirected: a 307/308 would resend the form (secret or client
            # assertion, code, refresh token) to any host, past parse_metadata's origin check.
            async with self.http.post(metadata.token_endpoint, data=form, timeout=self.timeout,
                                      allow_redirects=False) as resp:
                status = resp.status
                if 300 <= status < 400:
                    raise IdPFailure(f"The token endpoint answered with a redirect (HTTP "
                                     f"{status}), which is not followed.",
                                     reason=f"token-endpoint-{status}")
                body = await resp.json(content_type=None)
        except TimeoutError:
            raise IdPTimeout("The sign-in service's token endpoint did not answer in time.") \
                from None
        except aiohttp.ClientError:
            raise IdPUnavailable("The sign-in service's token endpoint is unreachable.") from None
        except ValueError:
            raise IdPFailure("The token endpoint's answer is not JSON.") from None
        if status != 200 or not isinstance(body, dict):
            raise aadsts.token_refusal(status, body, self.config)
        return body

    async def overage_groups(self, claims: dict[str, Any], tokens: dict[str, Any]) -> list[str]:
        """Groups from Graph when the ID token carries the overage marker instead of groups."""
        if not has_overage(claims):
            return list(claims.get("groups") or [])
        access_token = tokens.get("access_token")
        if not isinstance(access_token, str):
            raise IdPFailure("Your account is in too many groups to fit in the token, and no "
                             "Graph access token was issued (add the User.Read scope).")
        base = graph_base(self.azure, await self.metadata())
        try:
            groups = await member_groups(self.http, base, access_token, self.timeout)
        except ProxyError:
            self.metrics.graph_called("failed")
            raise
        self.metrics.graph_called("ok")
        return groups

    async def validate_bearer(self, token: str) -> dict[str, Any]:
        """Validate an API client's access token ([api]); one JWKS refetch on an unknown kid."""
        metadata = await self.metadata()
        v1_issuer, keys = None, self.keys
        if is_v1_token(token):
            v1_issuer, keys = (await self.v1.metadata()).issuer, self.v1.keys
        claims = await self._with_refetch(lambda keys: validate_access_token(
            token, keys=keys, metadata=metadata, azure=self.azure,
            audiences=self.config.api.audiences, v1_issuer=v1_issuer), keys)
        if claims is None:
            raise BearerRejected("it is signed with an unknown key")
        return claims

    async def validate(self, id_token: str, nonce: str | None) -> dict[str, Any]:
        """Validate an ID token; an unknown kid triggers one (rate-limited) JWKS refetch."""
        metadata = await self.metadata()
        claims = await self._with_refetch(lambda keys: validate_id_token(
            id_token, keys=keys, metadata=metadata, azure=self.azure, nonce=nonce))
        if claims is None:
            raise LoginRejected("the token is signed with an unknown key")
        return claims

    async def _with_refetch(
            self, check: Callable[[KeySet], dict[str, Any]],
            keys: Callable[..., Awaitable[KeySet]] | None = None) -> dict[str, Any] | None:
        """Run a token check with the cached keys (the v2 ones unless `keys` says), and once
        more after one (rate-limited) JWKS refetch if the token names an unknown kid; None
        if the kid stays unknown."""
        fetch = keys or self.keys
        for refresh in (False, True):
            try:
                return check(await fetch(refresh=refresh))
            except UnknownKey:
                continue
        return None


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote_plus leaves as it is


def _query_value(value: str) -> str:
    """`value` as urlencode would write it, without the work when nothing needs escaping."""
    return value if _UNRESERVED.fullmatch(value) else quote_plus(value)
