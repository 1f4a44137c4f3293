"""Entra's AADSTS error codes that people hit while setting up, each with a one-line fix.

Hints are templated only with values from OUR configuration (public URL, connector id,
client id, tenant, cloud): never with anything from a request, so a link cannot make the
proxy's page or log say what an attacker wants. Meanings: learn.microsoft.com "Microsoft
Entra authentication and authorization error codes" (reference-error-codes).

`admin` hints are configuration problems: they go in the log AND on the page (the person
who sees the page is often the one setting the proxy up). `user` problems put a sentence
for the person signing in on the page, and the admin's fix in the log only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import IdPFailure, IdPUnavailable, ProxyError, TokenRejected

# Token endpoint errors that mean the grant is dead (sign in again), not a fault.
_DEAD_GRANT = {"invalid_grant", "interaction_required", "consent_required", "login_required"}

# `error` values of the OAuth and OIDC specs and Entra: a page names only one of these (an
# error redirect's text is anyone's words, and a token endpoint's may be a spoofed IdP's).
KNOWN_ERRORS = _DEAD_GRANT | {
    "access_denied", "unauthorized_client", "invalid_request", "invalid_client",
    "invalid_resource", "invalid_scope", "server_error", "temporarily_unavailable",
    "unsupported_response_type", "unsupported_grant_type", "invalid_tenant"}

_CODE = re.compile(r"AADSTS(\d{4,9})\b")


@dataclass(frozen=True, slots=True)
class Hint:
    code: int
    admin: str  # the fix, for the log (and the page when `config` is true)
    config: bool  # a configuration problem: the page shows `admin`
    user: str = ""  # what the page says to the person signing in otherwise


_ASSIGN = "ask your administrator to give your account access to this application"
_HINTS: dict[int, tuple[str, bool, str]] = {
    50011: ("register {redirect_uri} as a Web redirect URI of app {client_id} (App "
            "registrations > Authentication), or fix [server] public_url", True, ""),
    500112: ("the redirect URI of the token request differs from the sign-in's: check "
             "[server] public_url ({redirect_uri})", True, ""),
    700016: ("app {client_id} is not registered in tenant {tenant}: check [azure] client_id "
             "and tenant_id (Overview page of the app registration)", True, ""),
    7000215: ("[azure] client_secret is not a valid secret of app {client_id}: use the secret's "
              "Value, not its Secret ID (Certificates & secrets)", True, ""),
    7000222: ("the client secret of app {client_id} has expired: create a new one under "
              "Certificates & secrets and set [azure] client_secret", True, ""),
    7000218: ("no credential was sent: set [azure] client_secret or "
              "client_certificate_file", True, ""),
    700027: ("the certificate in [azure] client_certificate_file is not registered on app "
             "{client_id} (Certificates & secrets > Certificates)", True, ""),
    # Federated credentials ([azure] client_credential = workload_identity/managed_identity).
    700211: ("no federated credential of app {client_id} names the token's issuer: add one "
             "with the AKS OIDC issuer URL, or {cloud}/{tenant}/v2.0 for a managed identity "
             "(az ad app federated-credential create, docs/secretless.md)", True, ""),
    700212: ("the federated token's audience is not one of the federated credential's: use "
             "api://AzureADTokenExchange on both sides", True, ""),
    700213: ("the federated credential's subject of app {client_id} differs from the token's "
             "(case-sensitive): system:serviceaccount:<namespace>:<service account>, or the "
             "managed identity's principal (object) ID", True, ""),
    700024: ("the client assertion is outside its validity: an expired federated token (is "
             "the projected token still rotated?) or a skewed clock", True, ""),
    90002: ("tenant {tenant} does not exist in {cloud}: set [azure] tenant_id to the Directory "
            "(tenant) ID of the app's Overview page, and check cloud_instance", True, ""),
    50194: ("app {client_id} is single-tenant: set [azure] tenant_id to its tenant's GUID, "
            "not common/organizations", True, ""),
    65001: ("app {client_id} lacks consent for its permissions: an admin grants it under "
            "API permissions > Grant admin consent", True, ""),
    50020: ("the account is not in tenant {tenant}: invite it as a guest, or make the app "
            "multi-tenant (tenant_id = organizations + allowed_tenants)", False,
            "your account's organization cannot use this application; sign in with an "
            "account of the organization, or ask its administrator to invite you"),
    50105: ("the user is not assigned to app {client_id}: assign them (or a group) under "
            "Enterprise applications > Users and groups, or turn off Assignment required",
            False, f"your account is not assigned to this application; {_ASSIGN}"),
    53003: ("a Conditional Access policy blocked the sign-in: see Entra's Sign-in logs for "
            "the policy", False, "your organization's access policies blocked this sign-in "
            "(device, location or sign-in method); contact your administrator"),
    65004: ("the user declined consent for app {client_id}: an admin can grant it for "
            "everyone (API permissions > Grant admin consent)", False,
            "the sign-in was cancelled because consent was declined; try again and accept"),
}


def hint(code: int | None, config: Config) -> Hint | None:
    """The fix for an AADSTS code, filled in from `config`; None for codes not in the table."""
    entry = _HINTS.get(code) if code is not None else None
    if entry is None or code is None:
        return None
    text, is_config, user = entry
    azure = config.azure
    values = {"redirect_uri": config.redirect_uri, "client_id": azure.client_id,
              "tenant": azure.tenant_id, "cloud": azure.cloud_instance.rstrip("/")}
    return Hint(code, text.format(**values), is_config, user)


def code_in(text: str) -> int | None:
    """The AADSTS code at the start of an `error_description` ("AADSTS50105: ..."), if any:
    digits only, so nothing else of the text can travel further."""
    match = _CODE.match(text.lstrip())
    return int(match[1]) if match else None


def code_of(body: Any) -> int | None:
    """The code of a token-endpoint error body: `error_codes[0]`, else the description's."""
    if not isinstance(body, dict):
        return None
    codes = body.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int) and codes[0] > 0:
        return codes[0]
    description = body.get("error_description")
    return code_in(description) if isinstance(description, str) else None


def first_line(text: str, limit: int = 200) -> str:
    """The description's first line without Entra's trailer, cut to `limit` characters (the
    log formatter escapes what is left)."""
    return text.strip().splitlines()[0][:limit] if text.strip() else ""


def page_text(found: Hint | None) -> str:
    """What the page may add for this code: the fix for a configuration problem, a sentence
    for the person signing in otherwise, nothing for codes we do not know."""
    if found is None:
        return ""
    sentence = found.admin if found.config else found.user
    return sentence[0].upper() + sentence[1:] + "."


def fetch_refusal(what: str, status: int, text: str, config: Config) -> IdPFailure:
    """A discovery (or key set) answer that is neither a document nor an outage, such as a
    wrong tenant's AADSTS90002: the HTTP status, the code of Entra's JSON error (digits
    only) and our fix for it. Nothing else of the answer reaches the page or /ready."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    code = code_of(body)
    fix = page_text(hint(code, config))
    return IdPFailure(f"The sign-in service's {what} answered HTTP {status}"
                      f"{f' (AADSTS{code})' if code else ''}. {fix}".strip(),
                      aadsts=str(code or ""), reason=f"idp-answered-{status}")


def token_refusal(status: int, body: Any, config: Config) -> ProxyError:
    """The error for a token endpoint answer that is not a token: unavailable (5xx), a dead
    grant (sign in again) or a failure, naming Entra's error and AADSTS code with our fix."""
    error = str(body.get("error") or "") if isinstance(body, dict) else ""
    suberror = str(body.get("suberror") or "") if isinstance(body, dict) else ""
    if status in (502, 503, 504):
        return IdPUnavailable(f"The sign-in service's token endpoint is unavailable "
                              f"(HTTP {status}).")
    cls = TokenRejected if error in _DEAD_GRANT else IdPFailure
    code = code_of(body)
    description = body.get("error_description") if isinstance(body, dict) else None
    fix = page_text(hint(code, config))
    shown = (error if error in KNOWN_ERRORS else "an error") if error else f"HTTP {status}"
    return cls(f"The token endpoint refused the request ({shown}"
               f"{f', AADSTS{code}' if code else ''}). {fix}".strip(), error=error[:60],
               suberror=suberror[:60], aadsts=str(code or ""), reason=f"token-endpoint-{status}",
               detail=first_line(description if isinstance(description, str) else ""))
