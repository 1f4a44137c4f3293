"""Azure App Service "Easy Auth" compatibility: X-MS-CLIENT-PRINCIPAL* headers and /.auth/me.

Formats follow what App Service sends for Microsoft Entra ID (provider "aad"):

- Microsoft Learn, "Work with user identities in Azure App Service authentication"
  (MicrosoftDocs/azure-docs articles/app-service/configure-authentication-user-identities.md):
  X-MS-CLIENT-PRINCIPAL is Base64 JSON {auth_typ, claims: [{typ, val}], name_typ, role_typ};
  its C# parser decodes with Encoding.UTF8 and builds ClaimsIdentity(auth_typ, name_typ, role_typ).
- Microsoft Learn, "Work with OAuth tokens in App Service authentication"
  (configure-authentication-oauth-tokens.md): X-MS-TOKEN-AAD-ID-TOKEN, -ACCESS-TOKEN, -EXPIRES-ON.
- "Customize sign-in and sign-out" (configure-authentication-customize-sign-in-out.md):
  /.auth/login/aad?post_login_redirect_uri=, /.auth/logout?post_logout_redirect_uri=,
  default landing page /.auth/logout/done.
- A real App Service capture (JanneMattila/some-questions-and-some-answers,
  q&a/app_service_and_authentication.md, 2021): -NAME is the email claim, -ID the oid, -IDP "aad",
  -EXPIRES-ON "2021-06-08T15:35:58.9638246Z"; the principal maps email/oid/sub/tid to the
  schema URIs below, keeps name/preferred_username, name_typ is the emailaddress URI.
- A real /.auth/me (Microsoft's Japan PaaS support blog, azure.github.io/jpazpaas, 2023-05
  "App Service 認証の概要と仕組みについて"): an array of one object with access_token,
  expires_on "2023-04-27T08:52:52.5858318Z", id_token, provider_name "aad", user_claims; and
  user_id, "the login name specific to the identity provider" (danderson00.com, 2016-09,
  "Microsoft Azure /.auth/me Endpoint Response Structure"). The OAuth-tokens article says access
  tokens are there only when the provider has a client secret: absent tokens are absent keys.
- App roles arrive as typ "roles" (kirkone/KK.AspNetCore.EasyAuthAuthentication PR #57 capture;
  AzureAD/microsoft-identity-web PR #2166, which sets RoleClaimType = "roles" for App Service),
  groups as typ "groups", one claim per value.

Deliberate differences: role_typ is "roles" (App Service says the ws/2008 role URI, which no
claim carries, so ClaimsPrincipal.IsInRole never matched there); name_typ names the claim that
-NAME actually holds (email, else preferred_username, else oid), so Identity.Name is never
null; no refresh token is ever sent; a value that is not printable ASCII never goes in a plain
header (the JSON escapes non-ASCII, so the principal carries it intact).
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime
from typing import Any, Final

from .identity import Identity
from .session.store import Tokens

PROVIDER = "aad"

ME_PATH = "/.auth/me"
LOGIN_PATH = "/.auth/login/aad"
LOGIN_REDIRECT_PARAM = "post_login_redirect_uri"
LOGOUT_PATH = "/.auth/logout"
LOGOUT_REDIRECT_PARAM = "post_logout_redirect_uri"
LOGOUT_DONE_PATH = "/.auth/logout/done"

PRINCIPAL = "X-MS-CLIENT-PRINCIPAL"
PRINCIPAL_NAME = "X-MS-CLIENT-PRINCIPAL-NAME"
PRINCIPAL_ID = "X-MS-CLIENT-PRINCIPAL-ID"
PRINCIPAL_IDP = "X-MS-CLIENT-PRINCIPAL-IDP"
ID_TOKEN = "X-MS-TOKEN-AAD-ID-TOKEN"
ACCESS_TOKEN = "X-MS-TOKEN-AAD-ACCESS-TOKEN"
EXPIRES_ON = "X-MS-TOKEN-AAD-EXPIRES-ON"

EMAIL_TYP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
NAMEIDENTIFIER_TYP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
OBJECTID_TYP = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TENANTID_TYP = "http://schemas.microsoft.com/identity/claims/tenantid"
ROLE_TYP = "roles"
GROUPS_TYP = "groups"

# App Service's default claim mapping, from token claim name to the typ apps see.
_TYP = {
    "email": EMAIL_TYP,
    "oid": OBJECTID_TYP,
    "sub": NAMEIDENTIFIER_TYP,
    "tid": TENANTID_TYP,
    "groups": GROUPS_TYP,
    "roles": ROLE_TYP,
}


def user_claims(identity: Identity) -> list[dict[str, str]]:
    """The {typ, val} list of both the principal header and /.auth/me: one claim per value.

    Entra writes ID-token claims in name order after the registered ones; App Service keeps
    token order, so the same order is used here. Empty values are left out, and so is `sid`
    (front-channel logout needs nothing else: no app may hold it).
    """
    values: dict[str, tuple[str, ...]] = {
        "email": (identity.email,),
        "groups": identity.groups,
        # As in the app-only access token App Service would have read the claims from.
        "idtyp": ("app",) if identity.is_app else (),
        "name": (identity.name,),
        "oid": (identity.oid,),
        "preferred_username": (identity.preferred_username,),
        "roles": identity.roles,
        "sub": (identity.sub,),
        "tid": (identity.tid,),
    }
    for claim, value in identity.extra.items():
        values.setdefault(claim, (value,))
    return [
        {"typ": _TYP.get(claim, claim), "val": str(val)}
        for claim in sorted(values)
        for val in values[claim]
        if val
    ]


# A principal too long for a header line carries, instead of its groups, what App Service
# passes on from an Entra token in overage: `_claim_names` and `_claim_sources` (as JSON
# strings), pointing here at /.auth/me, which lists every group.
GROUPS_ELSEWHERE: Final = (
    {"typ": "_claim_names", "val": json.dumps({"groups": "src1"}, separators=(",", ":"))},
    {"typ": "_claim_sources",
     "val": json.dumps({"src1": {"endpoint": ME_PATH}}, separators=(",", ":"))},
)


def principal(identity: Identity, *, groups_elsewhere: bool = False) -> dict[str, Any]:
    """The decoded X-MS-CLIENT-PRINCIPAL object, keys in App Service's order."""
    claims = user_claims(identity)
    if groups_elsewhere:
        claims = [c for c in claims if c["typ"] != GROUPS_TYP] + list(GROUPS_ELSEWHERE)
    return {
        "auth_typ": PROVIDER,
        "claims": claims,
        "name_typ": _name(identity)[0],
        "role_typ": ROLE_TYP,
    }


def encode_principal(identity: Identity, *, groups_elsewhere: bool = False) -> str:
    """Base64 of compact JSON; non-ASCII is \\u-escaped, so ASCII, UTF-8 and latin-1 decoders
    (all seen in Easy Auth samples) read the same text."""
    body = json.dumps(principal(identity, groups_elsewhere=groups_elsewhere),
                      separators=(",", ":"), ensure_ascii=True)
    return base64.b64encode(body.encode("ascii")).decode("ascii")


def principal_headers(
    identity: Identity, session_tokens: Tokens | None, *, with_tokens: bool,
    max_line: int | None = None, groups_elsewhere: bool = False,
) -> list[tuple[str, str]]:
    """Headers App Service adds upstream; tokens only when enabled and the session holds them.
    `max_line`: the longest "Name: value" line allowed. A principal past it goes without its
    groups (GROUPS_ELSEWHERE); one still past it is not sent at all (the app then sees no
    user rather than a wrong one)."""
    headers: list[tuple[str, str]] = []
    encoded = encode_principal(identity, groups_elsewhere=groups_elsewhere)
    if max_line is not None and len(PRINCIPAL) + 2 + len(encoded) > max_line:
        encoded = encode_principal(identity, groups_elsewhere=True)
    if max_line is None or len(PRINCIPAL) + 2 + len(encoded) <= max_line:
        headers.append((PRINCIPAL, encoded))
    name = next((v for _, v in _name_candidates(identity) if _header_safe(v)), "")
    if name:
        headers.append((PRINCIPAL_NAME, name))
    if _header_safe(identity.oid):
        headers.append((PRINCIPAL_ID, identity.oid))
    headers.append((PRINCIPAL_IDP, PROVIDER))
    if with_tokens and session_tokens is not None:
        headers += token_headers(session_tokens)
    return headers


def token_headers(session_tokens: Tokens) -> list[tuple[str, str]]:
    """The X-MS-TOKEN-AAD-* headers (easy_auth_tokens), each only if safe to send."""
    return [
        (header, value) for header, value in (
            (ID_TOKEN, session_tokens.id_token),
            (ACCESS_TOKEN, session_tokens.access_token),
            (EXPIRES_ON, expires_on(session_tokens)),
        )
        if _header_safe(value)
    ]


def auth_me(
    identity: Identity, session_tokens: Tokens | None, *, with_tokens: bool
) -> list[dict[str, Any]]:
    """The /.auth/me body: one entry for the "aad" provider, keys in App Service's order.

    Tokens appear only when explicitly enabled: a same-origin endpoint that serves tokens
    hands them to any XSS in the app. The refresh token is never served.
    """
    entry: dict[str, Any] = {}
    if with_tokens and session_tokens is not None:
        entry = {
            key: value for key, value in (
                ("access_token", session_tokens.access_token),
                ("expires_on", expires_on(session_tokens)),
                ("id_token", session_tokens.id_token),
            )
            if value
        }
    entry["provider_name"] = PROVIDER
    entry["user_claims"] = user_claims(identity)
    entry["user_id"] = _name(identity)[1]
    return [entry]


def expires_on(session_tokens: Tokens) -> str:
    """The access token's expiry as App Service writes it (.NET round-trip, 7 fraction digits, Z).

    "" when the expiry is unknown or out of range.
    """
    at = session_tokens.expires_at
    if not math.isfinite(at) or at <= 0:
        return ""
    try:
        moment = datetime.fromtimestamp(at, UTC)
    except (OverflowError, OSError, ValueError):
        return ""
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def _name_candidates(identity: Identity) -> list[tuple[str, str]]:
    """(typ, value) that App Service would call the user's name, best first."""
    pairs = ((EMAIL_TYP, identity.email), ("preferred_username", identity.preferred_username),
             (OBJECTID_TYP, identity.oid))
    return [(typ, value) for typ, value in pairs if value]


def _name(identity: Identity) -> tuple[str, str]:
    """The name claim's (typ, value): email as App Service does, else the UPN, else the oid."""
    candidates = _name_candidates(identity)
    return candidates[0] if candidates else (EMAIL_TYP, "")


def _header_safe(value: str) -> bool:
    """Printable ASCII only: nothing to inject, nothing a latin-1 reader would garble."""
    return bool(value) and all(" " <= ch <= "~" for ch in value)
