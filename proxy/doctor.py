"""`azure-auth-proxy doctor`: the tenant setup checked from the outside, each check PASS,
WARN or FAIL with the fix. Only the configured cloud (and Graph, when groups are used) is
contacted, with the configured timeout; nothing secret is printed."""

from __future__ import annotations

import dataclasses
import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from .config import Config
from .errors import ConfigError, CredentialUnavailable, IdPError, ProxyError
from .oidc import aadsts
from .oidc.client import EntraClient, load_credential
from .oidc.discovery import Metadata, discovery_url, issuer_problem, parse_metadata
from .oidc.graph import graph_base
from .oidc.tokens import LEEWAY

SKEW_WARN = 60  # seconds: fine today, but half the ID token leeway is gone
SKEW_FAIL = LEEWAY  # beyond the leeway, fresh tokens read as not yet valid or expired
_MULTI = ("common", "organizations", "consumers")
# Token errors Entra gives only once the client authenticated (about the scope or grant).
_PAST_CLIENT_AUTH = frozenset({"invalid_scope", "invalid_resource", "invalid_grant",
                               "consent_required", "interaction_required"})

_CREDENTIAL_NAMES = {"secret": "client secret", "certificate": "certificate",
                     "workload_identity": "federated token", "managed_identity":
                     "managed identity's token"}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # PASS | WARN | FAIL
    detail: str
    fix: str = ""


def _aadsts_fix(config: Config, body: Any, fallback: str) -> tuple[int | None, str]:
    code = aadsts.code_of(body)
    found = aadsts.hint(code, config)
    return code, found.admin if found else fallback


async def _get(http: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout,
               **kwargs: Any) -> tuple[int, Any, str, dict[str, str]]:
    """(status, JSON body or None, text, headers); raises ClientError or TimeoutError."""
    async with http.get(url, timeout=timeout, allow_redirects=False, **kwargs) as resp:
        text = (await resp.content.read(1 << 20)).decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return resp.status, body, text, dict(resp.headers)


def _unreachable(name: str, what: str, exc: BaseException, seconds: float, fix: str) -> Check:
    if isinstance(exc, TimeoutError):
        return Check(name, "FAIL", f"{what} did not answer within {seconds:g} s", fix)
    return Check(name, "FAIL", f"{what} is unreachable ({type(exc).__name__})", fix)


class Doctor:
    def __init__(self, config: Config, http: aiohttp.ClientSession, tenant: str = "") -> None:
        self.config = config
        self.azure = config.azure
        self.http = http
        self.tenant = tenant
        self.timeout = aiohttp.ClientTimeout(total=config.azure.timeout)
        self.checks: list[Check] = []

    def add(self, name: str, status: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, detail, fix))

    async def run(self) -> list[Check]:
        metadata, date = await self.discovery()
        if metadata is not None:
            await self.jwks()
        self.clock(date)
        await self.credential(metadata)
        await self.redirect_uri(metadata)
        if self.groups_used():
            await self.graph(metadata)
        return self.checks

    async def discovery(self) -> tuple[Metadata | None, str]:
        url = discovery_url(self.azure)
        fix = "check [azure] cloud_instance and tenant_id, and that this host may reach it"
        try:
            status, body, _, headers = await _get(self.http, url, self.timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.checks.append(_unreachable("discovery", url, exc, self.timeout.total or 0, fix))
            return None, ""
        date = headers.get("Date", "")
        if status != 200 or not isinstance(body, dict):
            code, hint = _aadsts_fix(self.config, body, fix)
            self.add("discovery", "FAIL", f"{url} answered HTTP {status}"
                     + (f" (AADSTS{code})" if code else ""), hint)
            return None, date
        self.add("discovery", "PASS", f"{url} fetched")
        issuer = str(body.get("issuer", ""))
        if problem := issuer_problem(self.azure, issuer):
            self.add("issuer", "FAIL", problem, "set [azure] cloud_instance to the cloud the "
                     "tenant lives in, and tenant_id to the tenant's GUID or domain")
            return None, date
        try:
            metadata = parse_metadata(self.azure, body)
        except IdPError as exc:
            self.add("issuer", "FAIL", exc.public, fix)
            return None, date
        self.add("issuer", "PASS", f"{issuer} matches tenant_id {self.azure.tenant_id}")
        return metadata, date

    async def jwks(self) -> None:
        try:
            keys = await EntraClient(self.config, self.http).keys()
        except ProxyError as exc:
            self.add("jwks", "FAIL", exc.public, "the key set must be reachable from this "
                     "host: Entra's signing keys verify every sign-in")
            return
        if not keys.keys:
            self.add("jwks", "FAIL", "the key set holds no RS256 signing key",
                     "check [azure] cloud_instance")
        else:
            count = len(keys.keys)
            self.add("jwks", "PASS", f"{count} signing key{'s' if count != 1 else ''}")

    def clock(self, date: str) -> None:
        try:
            idp = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError):
            self.add("clock", "WARN", "the IdP sent no usable Date header: skew not measured",
                     "keep this host's clock synchronised (NTP)")
            return
        skew = time.time() - idp
        ahead = "ahead of" if skew > 0 else "behind"
        detail = f"this host's clock is {abs(skew):.0f} s {ahead} the IdP's"
        fix = (f"synchronise this host's clock (NTP): ID tokens are checked with {LEEWAY} s of "
               "leeway, past which fresh tokens read as expired or not yet valid")
        if abs(skew) > SKEW_FAIL:
            self.add("clock", "FAIL", detail, fix)
        elif abs(skew) > SKEW_WARN:
            self.add("clock", "WARN", detail, fix)
        else:
            self.add("clock", "PASS", detail)

    async def credential(self, metadata: Metadata | None) -> None:
        tenant = self.tenant or self.azure.tenant_id
        if metadata is None:
            self.add("credential", "WARN", "not probed: the discovery document is needed "
                     "first", "fix the discovery check above")
            return
        if tenant.lower() in _MULTI:
            self.add("credential", "WARN", f"not probed: tenant_id is {tenant}, and a client "
                     "credentials request needs a tenant", "run doctor with --tenant <the "
                     "app's home tenant GUID> to probe the secret or certificate")
            return
        config = dataclasses.replace(
            self.config, azure=dataclasses.replace(self.azure, tenant_id=tenant))
        scope = f"{self.azure.client_id}/.default"
        try:
            credential = load_credential(self.azure)
        except ConfigError as exc:
            self.add("credential", "FAIL", exc.problems[0], "fix the certificate files")
            return
        try:
            await EntraClient(config, self.http, credential).app_token(scope)
        except ValueError as exc:  # neither secret nor certificate
            self.add("credential", "FAIL", str(exc), "set [azure] client_secret or "
                     "client_certificate_file")
            return
        except CredentialUnavailable as exc:  # a federated token file, an identity endpoint
            self.add("credential", "FAIL", exc.cause, "docs/secretless.md")
            return
        except ProxyError as exc:
            self._credential_refused(config, exc)
            return
        kind = _CREDENTIAL_NAMES.get(credential.kind, credential.kind)
        self.add("credential", "PASS", f"the {kind} got an app token for {scope} from tenant "
                 f"{tenant} (the path every token request of the proxy takes)")

    def _credential_refused(self, config: Config, exc: ProxyError) -> None:
        error, code = exc.context.get("error", ""), exc.context.get("aadsts", "")
        found = aadsts.hint(int(code) if code.isdigit() else None, config)
        fix = found.admin if found else "see Entra's answer; docs/troubleshooting.md"
        detail = exc.public.split(". ")[0]
        if error not in _PAST_CLIENT_AUTH:  # unknown words prove nothing was accepted
            self.add("credential", "FAIL", detail, fix)
        else:  # past client authentication: the credential itself was accepted
            self.add("credential", "WARN", f"the credential was accepted, but {detail}", fix)

    async def redirect_uri(self, metadata: Metadata | None) -> None:
        uri = self.config.redirect_uri
        fix = (f"register {uri} as a Web (not SPA) redirect URI of app {self.azure.client_id}"
               " (App registrations > Authentication)")
        if metadata is None:
            self.add("redirect-uri", "WARN", f"the proxy sends {uri} (not checked: no "
                     "discovery)", fix)
            return
        # A silent sign-in: Entra redirects back (login_required) only to a registered URI,
        # and shows its own error page (AADSTS50011, AADSTS700016) otherwise.
        url = URL(metadata.authorization_endpoint).update_query(
            client_id=self.azure.client_id, response_type="code", redirect_uri=uri,
            scope="openid", prompt="none", state="doctor")
        try:
            status, _, text, headers = await _get(self.http, str(url), self.timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.checks.append(_unreachable("redirect-uri", "the authorize endpoint", exc,
                                            self.timeout.total or 0, fix))
            return
        location = headers.get("Location", "")
        if status in (302, 303) and location.startswith(uri):
            self.add("redirect-uri", "PASS", f"Entra accepts {uri}")
            return
        code = aadsts.code_in(text[text.find("AADSTS"):]) if "AADSTS" in text else None
        found = aadsts.hint(code, self.config)
        if code is not None:
            self.add("redirect-uri", "FAIL", f"Entra refuses {uri} (AADSTS{code})",
                     found.admin if found else fix)
        else:
            self.add("redirect-uri", "WARN", f"the proxy sends {uri}; Entra's answer (HTTP "
                     f"{status}) did not confirm it", fix)

    def groups_used(self) -> bool:
        policies = [self.config.access] + [u.access for u in self.config.upstreams if u.access]
        return any(p.groups for p in policies)

    async def graph(self, metadata: Metadata | None) -> None:
        empty = Metadata("", "", "", "", "", "", "")
        base = graph_base(self.azure, metadata or empty)
        url = f"{base}/v1.0/me"
        fix = ("users in over 200 groups need Microsoft Graph: allow this host to reach it, "
               "or set [azure] graph_url")
        try:
            status, _, _, _ = await _get(self.http, url, self.timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.checks.append(_unreachable("graph", url, exc, self.timeout.total or 0, fix))
            return
        if status >= 500:
            self.add("graph", "FAIL", f"{url} answered HTTP {status}", fix)
        else:
            self.add("graph", "PASS", f"{base} reachable (HTTP {status} without a token)")


async def run_checks(config: Config, tenant: str = "") -> list[Check]:
    async with aiohttp.ClientSession() as http:
        return await Doctor(config, http, tenant).run()


def passed(checks: list[Check]) -> bool:
    """No check failed (a WARN could not confirm something, or is close to a limit)."""
    return all(c.status != "FAIL" for c in checks)


def report(checks: list[Check], as_json: bool) -> str:
    if as_json:
        return json.dumps({"ok": passed(checks),
                           "checks": [dataclasses.asdict(c) for c in checks]}, indent=2)
    lines = []
    for check in checks:
        lines.append(f"{check.status} {check.name}: {check.detail}")
        if check.fix and check.status != "PASS":
            lines.append(f"     fix: {check.fix}")
    return "\n".join(lines)
