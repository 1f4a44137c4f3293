"""ID token validation (OIDC Core §3.1.3.7 with Entra's issuer rules, ENTRA.md §3).

RS256 only: `alg: none` and HMAC are refused before any key is touched.
"""

from __future__ import annotations

import functools
import hmac
import time
from collections.abc import Callable
from typing import Any

import jwt

from ..config import CONSUMERS_TENANT_ID, AzureConfig
from ..errors import LoginRejected
from ..validators import is_guid
from .discovery import TEMPLATE, Metadata, issuer_base
from .jwks import KeySet

LEEWAY = 120  # seconds of clock skew; MSAL uses the same
REQUIRED = ["iss", "aud", "exp", "iat", "sub"]


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise LoginRejected("the token is not a well-formed JWT") from None
    if header.get("alg") != "RS256":
        raise LoginRejected(f"signature algorithm {str(header.get('alg'))[:20]!r} is not allowed")
    return header


def _decode(token: str, keys: KeySet, kid: str | None, client_id: str,
            now: float) -> tuple[dict[str, Any], Any]:
    errors: list[str] = []
    for key in keys.candidates(kid):
        try:
            claims = jwt.decode(
                token, key.key, algorithms=["RS256"], audience=client_id, leeway=LEEWAY,
                options={"require": REQUIRED, "verify_iss": False, "strict_aud": False},
            )
        except jwt.InvalidSignatureError:
            errors.append("the signature does not verify")
            continue
        except jwt.MissingRequiredClaimError as exc:
            raise LoginRejected(f"the {exc.claim} claim is missing") from None
        except jwt.ExpiredSignatureError:
            raise LoginRejected("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise LoginRejected("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise LoginRejected("the audience (aud) is not this application") from None
        except jwt.PyJWTError as exc:
            raise LoginRejected(f"the token is invalid ({type(exc).__name__})") from None
        if _now_checks(claims, now):
            return claims, key
    raise LoginRejected(errors[0] if errors else "no signing key matches")


def _now_checks(claims: dict[str, Any], now: float) -> bool:
    # pyjwt does these with its own clock; repeat with ours so tests can freeze time.
    if float(claims["exp"]) < now - LEEWAY:
        raise LoginRejected("the token has expired")
    if float(claims["iat"]) > now + LEEWAY or float(claims.get("nbf", 0)) > now + LEEWAY:
        raise LoginRejected("the token is not valid yet (nbf or iat in the future)")
    return True


def validate_id_token(token: str, *, keys: KeySet, metadata: Metadata, azure: AzureConfig,
                      nonce: str | None, now: float | None = None) -> dict[str, Any]:
    """Claims of a valid ID token; LoginRejected names the failed check. UnknownKey propagates."""
    now = time.time() if now is None else now
    header = _header(token)
    claims, key = _decode(token, keys, header.get("kid"), azure.client_id, now)
    tid = claims.get("tid")
    if not isinstance(tid, str) or not is_guid(tid):
        raise LoginRejected("the tid claim is missing or not a tenant GUID")
    expected = metadata.issuer.replace(TEMPLATE, tid)
    if claims["iss"] != expected:
        raise LoginRejected("the issuer (iss) does not match the tenant")
    if key.issuer and key.issuer.replace(TEMPLATE, tid) != claims["iss"]:
        raise LoginRejected("the signing key belongs to another issuer")
    if (key.cloud_instance_name and metadata.cloud_instance_name
            and key.cloud_instance_name != metadata.cloud_instance_name):
        raise LoginRejected("the signing key belongs to another cloud")
    aud = claims["aud"]
    azp = claims.get("azp")
    if isinstance(aud, list) and len(aud) > 1 and azp is None:
        raise LoginRejected("several audiences (aud) but no authorized party (azp)")
    if azp is not None and azp != azure.client_id:
        raise LoginRejected("the authorized party (azp) is not this application")
    if nonce is not None:
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise LoginRejected("the nonce does not match this sign-in")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise LoginRejected("the sub claim is missing")
    if not isinstance(claims.get("oid"), str) or not claims["oid"]:
        raise LoginRejected("the oid claim is missing (request the 'profile' scope)")
    return claims


def tenant_allowed(azure: AzureConfig, tid: str) -> bool:
    """allowed_tenants restricts multi-tenant apps; the issuer check only proves consistency."""
    if not azure.allowed_tenants:
        return azure.allow_any_tenant or not azure.multi_tenant
    return tid.lower() in {t.lower() for t in azure.allowed_tenants}


def session_mismatch(azure: AzureConfig, aud: str, iss: str, tid: str) -> str | None:
    """Why a stored session, made for `aud` and issued by `iss` for tenant `tid`, is not
    one this configuration would issue now (None: it is). Checked on every request, so a
    reload or restart that changes client_id, the cloud or the tenant ends old sessions.
    Config only, no I/O: a domain-name tenant is bound by its client_id and issuer form."""
    if not aud or not hmac.compare_digest(aud.encode(), azure.client_id.encode()):
        return "made-for-another-client-id"
    expected = f"{issuer_base(azure)}/{tid}/v2.0"  # an alias cloud host issues canonically
    if not iss or iss.lower() != expected.lower():
        return "made-by-another-issuer"
    tenant = azure.tenant_id.lower()
    if (is_guid(tenant) and tid.lower() != tenant) or (
            tenant == "consumers" and tid.lower() != CONSUMERS_TENANT_ID.lower()):
        return "made-for-another-tenant"
    if not tenant_allowed(azure, tid):
        return "tenant-not-allowed"
    return None


class SessionBinding:
    """`session_mismatch` for one configuration, remembered: the answer depends only on the
    config and a session's (aud, iss, tid), which all its sessions share, and every request
    asks it (2 us and a UUID parse each time otherwise). A new config gets a new one."""

    def __init__(self, azure: AzureConfig, size: int = 1024) -> None:
        self.azure = azure
        # functools' LRU is C: 0.07 us a lookup against cachetools' 0.5 (timeit).
        self.mismatch: Callable[[str, str, str], str | None] = functools.lru_cache(
            maxsize=size)(functools.partial(session_mismatch, azure))
