"""Bearer access tokens for this proxy's own API (SPEC §3 `[api]`, ENTRA.md §3-§4).

The API app's `accessTokenAcceptedVersion` decides the shape: null/1 gives v1 tokens
(`iss` https://{the cloud's sts host}/{tid}/, `ver` 1.0, `aud` the App ID URI or the client
ID, as the client asked), 2 gives v2 tokens (the discovery issuer, `aud` the client ID). A
v1 token is checked against the v1 document's issuer and keys (`oidc/v1.py`), a v2 token
against the v2 ones. Graph tokens are someone else's and are always refused. Which callers
count is `callers.py`'s question.
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Any

import jwt

from ..config import AzureConfig
from ..errors import Unauthenticated
from ..validators import is_guid
from .callers import is_app_token
from .discovery import TEMPLATE, Metadata
from .jwks import KeySet, SigningKey
from .tokens import LEEWAY, tenant_allowed

if TYPE_CHECKING:  # a TypedDict for mypy only; no runtime dependency on jwt.types
    from jwt.types import Options

MAX_HEADER = 16 * 1024  # Entra tokens with 200 groups stay well under this
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Graph's audiences in every cloud: refused even when an operator lists one in `audiences`.
_GRAPH_AUDIENCES = frozenset({
    GRAPH_APP_ID, "https://graph.microsoft.com", "https://canary.graph.microsoft.com",
    "https://graph.microsoft.us", "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn", "https://graph.microsoft.de",
})
# RFC 6750 §2.1: "Bearer" 1*SP b64token; the scheme is case-insensitive (RFC 9110 §11.1).
_BEARER = re.compile(r"(?i:bearer) +([A-Za-z0-9\-._~+/]+=*)")
# Header `alg` is attacker-chosen: only well-known names are echoed into a reason.
_KNOWN_ALGS = frozenset({
    "none", "HS256", "HS384", "HS512", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES256K", "ES384", "ES512", "EdDSA",
})
_COPIED = ("oid", "tid", "sub", "name", "email", "groups", "roles", "scp",
           "_claim_names", "_claim_sources", "hasgroups",
           "iat", "auth_time", "amr", "acrs")  # step-up proof (step_up.Proof.from_token)


class BearerRejected(Unauthenticated):
    """A bearer token failed validation. `reason` names the check; it never holds the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The bearer token was rejected: {reason}.", reason=reason)
        self.reason = reason
        # RFC 6750 §3: tell the client the token itself is the problem.
        self.challenge = ('Bearer realm="azure-auth-proxy", error="invalid_token", '
                          f'error_description="{reason.replace(chr(34), "")}"')


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>`; None for any other or malformed value."""
    if authorization_header is None or len(authorization_header) > MAX_HEADER:
        return None
    match = _BEARER.fullmatch(authorization_header)
    return match[1] if match else None


def is_v1_token(token: str) -> bool:
    """Whether the (not yet verified) token claims a v1 issuer: it then gets the v1 keys and
    must have the v1 issuer, so a lie here only picks the check that refuses it."""
    try:
        iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return False  # the v2 path names what is wrong with it
    return isinstance(iss, str) and not iss.endswith("/v2.0")


def validate_access_token(token: str, *, keys: KeySet, metadata: Metadata, azure: AzureConfig,
                          audiences: tuple[str, ...], v1_issuer: str | None = None,
                          now: float | None = None) -> dict[str, Any]:
    """Claims of a valid access token for this API; BearerRejected names the failed check.

    `keys` are the v2 keys, or with `v1_issuer` (the v1 document's) the v1 keys: only a
    token of that version passes. The client ID is always an accepted audience (v2 tokens
    always carry it). UnknownKey propagates so the caller can refetch the JWKS once and retry.
    """
    now = time.time() if now is None else now
    kid = _header(token)
    claims, key = _verify_signature(token, keys, kid)
    _check_times(claims, now)
    _check_audience(claims, (*audiences, azure.client_id) if azure.client_id else audiences,
                    metadata)
    tid = claims["tid"]
    if not isinstance(tid, str) or not is_guid(tid):
        raise BearerRejected("the tid claim is not a tenant GUID")
    v2_issuer = _check_issuer(claims, metadata, tid, v1_issuer)
    _check_key(key, claims["iss"], v2_issuer, tid, metadata)
    # (tid, oid) is the identity key: without oid, different callers would share one identity.
    if not isinstance(claims.get("oid"), str) or not claims["oid"]:
        raise BearerRejected("the oid claim is missing")
    if not tenant_allowed(azure, tid):
        raise BearerRejected("the token's tenant (tid) is not allowed here")
    # An ID token can share our audience (the bare client ID) but is not a credential for an
    # API: access tokens name the calling client (v2 azp, v1 appid) and carry no nonce.
    if "nonce" in claims or not (claims.get("azp") or claims.get("appid")):
        raise BearerRejected("this is not an access token (an ID token cannot call the API)")
    return claims


def identity_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """Validated access-token claims under the names `Identity.from_claims` reads.

    v1 tokens have no `preferred_username`: `upn`, then `unique_name`, stand in. `azp` is
    the calling client (v1 `appid`). `idtyp` is "app" for app-only tokens (the claim says
    so, or there is no `scp`), whose `oid` is the calling app's service principal; a user
    token always has `scp`. Overage markers are kept so the caller can fail closed on
    group-gated routes (`graph.has_overage`).
    """
    out = {name: claims[name] for name in _COPIED if name in claims}
    for name in ("preferred_username", "upn", "unique_name"):
        if isinstance(claims.get(name), str) and claims[name]:
            out["preferred_username"] = claims[name]
            break
    client = claims.get("azp") or claims.get("appid")
    if isinstance(client, str):
        out["azp"] = client
    out["idtyp"] = "app" if is_app_token(claims) else "user"
    return out


def _header(token: str) -> str | None:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise BearerRejected("the token is not a well-formed JWT") from None
    except jwt.PyJWTError:  # pyjwt also vets header members, e.g. a non-string kid
        raise BearerRejected("the token header is malformed") from None
    alg = header.get("alg")
    if alg != "RS256":
        shown = alg if alg in _KNOWN_ALGS else "unknown"
        raise BearerRejected(f"signature algorithm {shown!r} is not allowed")
    # Graph access tokens carry a header nonce and are hashed before signing: not ours.
    if "nonce" in header:
        raise BearerRejected("the token is for another API (header nonce)")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):  # pyjwt releases that don't vet it
        raise BearerRejected("the token header is malformed")
    return kid


def _verify_signature(token: str, keys: KeySet,
                      kid: str | None) -> tuple[dict[str, Any], SigningKey]:
    # Times, audience and issuer are checked below with our clock and Entra's rules.
    options: Options = {
        "require": ["exp", "iss", "aud", "tid"], "verify_exp": False, "verify_nbf": False,
        "verify_iat": False, "verify_aud": False, "verify_iss": False,
    }
    for key in keys.candidates(kid):
        try:
            claims = jwt.decode(token, key.key, algorithms=["RS256"], options=options)
        except jwt.InvalidSignatureError:
            continue
        except jwt.MissingRequiredClaimError as exc:
            raise BearerRejected(f"the {exc.claim} claim is missing") from None
        except jwt.PyJWTError as exc:
            raise BearerRejected(f"the token is invalid ({type(exc).__name__})") from None
        return claims, key
    raise BearerRejected("the signature does not verify")


def _timestamp(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # json accepts NaN and huge integers; a NaN exp would never expire.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BearerRejected(f"the {name} claim is not a timestamp")
    try:
        number = float(value)
    except OverflowError:
        raise BearerRejected(f"the {name} claim is not a timestamp") from None
    if not math.isfinite(number):
        raise BearerRejected(f"the {name} claim is not a timestamp")
    return number


def _check_times(claims: dict[str, Any], now: float) -> None:
    exp = _timestamp(claims, "exp")
    if exp is None or exp < now - LEEWAY:
        raise BearerRejected("the token has expired")
    nbf = _timestamp(claims, "nbf")
    if nbf is not None and nbf > now + LEEWAY:
        raise BearerRejected("the token is not valid yet (nbf in the future)")
    iat = _timestamp(claims, "iat")
    if iat is not None and iat > now + LEEWAY:
        raise BearerRejected("the token is not valid yet (iat in the future)")


def _is_graph(audience: str, metadata: Metadata) -> bool:
    normal = audience.strip().rstrip("/").lower()
    own = f"https://{metadata.msgraph_host.lower()}" if metadata.msgraph_host else ""
    return normal in _GRAPH_AUDIENCES or normal == own


def _check_audience(claims: dict[str, Any], audiences: tuple[str, ...],
                    metadata: Metadata) -> None:
    aud = claims["aud"]
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise BearerRejected("the audience (aud) is malformed")
    if any(_is_graph(v, metadata) for v in values):
        raise BearerRejected("the token is for Microsoft Graph, not for this API")
    accepted = {a for a in audiences if not _is_graph(a, metadata)}
    if accepted.isdisjoint(values):
        raise BearerRejected("the audience (aud) is not this API")


def _check_issuer(claims: dict[str, Any], metadata: Metadata, tid: str,
                  v1_issuer: str | None) -> str:
    """The v2 issuer for this tid, once `iss` is proven to be it (v2 keys) or the v1
    document's issuer for this tid (v1 keys)."""
    v2_issuer = metadata.issuer.replace(TEMPLATE, tid)
    # A single-tenant issuer has no template: this pins the tenant for v1 tokens too.
    if not v2_issuer.endswith(f"/{tid}/v2.0"):
        raise BearerRejected("the token's tenant (tid) is not this authority's tenant")
    expected = v2_issuer if v1_issuer is None else v1_issuer.replace(TEMPLATE, tid)
    version = "2.0" if v1_issuer is None else "1.0"
    if claims["iss"] != expected or (v1_issuer is not None and not expected.endswith(f"/{tid}/")):
        raise BearerRejected("the issuer (iss) is not this authority for the token's tenant")
    if claims.get("ver", version) != version:
        raise BearerRejected("the token version (ver) does not match its issuer")
    return v2_issuer


def _check_key(key: SigningKey, iss: str, v2_issuer: str, tid: str, metadata: Metadata) -> None:
    # IdentityModel's AadIssuerValidator: the key's issuer must be the token's issuer or the
    # v2 issuer of the same tid, because v1 tokens are signed with keys that carry v2 issuers.
    if key.issuer and key.issuer.replace(TEMPLATE, tid) not in (iss, v2_issuer):
        raise BearerRejected("the signing key belongs to another issuer")
    # The global JWKS also lists other clouds' keys (ENTRA.md §2).
    if (key.cloud_instance_name and metadata.cloud_instance_name
            and key.cloud_instance_name != metadata.cloud_instance_name):
        raise BearerRejected("the signing key belongs to another cloud")
