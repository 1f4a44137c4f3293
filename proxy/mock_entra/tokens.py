"""Claims of ID and Graph access tokens, and the token response (ENTRA.md §4, §5)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
from typing import Any, Final

from .api_tokens import delegated_resource, delegated_token, token_lifetime
from .authentication import id_token_proof
from .errors import EntraError
from .faults import apply_overrides
from .keys import b64url, encode_jws, sign_id_token
from .state import AccessGrant, MockEntra, SignIn
from .users import MockUser

GRAPH_APP_ID: Final = "00000003-0000-0000-c000-000000000000"
GRAPH_SCOPE_PREFIX: Final = "https://graph.microsoft.com/"
ID_TOKEN_LIFETIME_SECONDS: Final = 3600
ACCESS_TOKEN_LIFETIME_SECONDS: Final = 3599
LOGIN_HINT_PREFIX: Final = "mock-login-hint:"


def pairwise_sub(client_id: str, tid: str, oid: str) -> str:
    """Entra's `sub`: stable per (app, tenant, user), 43 base64url characters."""
    return b64url(hashlib.sha256(f"{client_id}\n{tid}\n{oid}".encode()).digest())


def issuer(base: str, tid: str) -> str:
    return f"{base}/{tid}/v2.0"


def _opaque(size: int) -> str:
    return b64url(secrets.token_bytes(size))


def group_claims(user: MockUser, overage_limit: int) -> dict[str, Any]:
    """`groups`, or past the limit the overage pointer Entra emits instead."""
    if len(user.groups) > overage_limit:
        endpoint = f"https://graph.windows.net/{user.tid}/users/{user.oid}/getMemberObjects"
        return {
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": endpoint}},
        }
    return {"groups": list(user.groups)} if user.groups else {}


def id_token_claims(
    user: MockUser, sign_in: SignIn, *, base: str, now: int, overage_limit: int,
    optional_claims: tuple[str, ...] = (), amr: bool = False,
) -> dict[str, Any]:
    """The v2 ID token payload, in the order Entra emits it."""
    claims: dict[str, Any] = {
        "aud": sign_in.client_id,
        "iss": issuer(base, user.tid),
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_LIFETIME_SECONDS,
        "aio": _opaque(48),
        "name": user.name,
    }
    if sign_in.nonce is not None:
        claims["nonce"] = sign_in.nonce
    claims |= {
        "oid": user.oid,
        "preferred_username": user.username,
        "rh": f"0.A{_opaque(36)}.",
        "sid": sign_in.sid,
        "sub": pairwise_sub(sign_in.client_id, user.tid, user.oid),
        "tid": user.tid,
        "uti": _opaque(16),
        "ver": "2.0",
    }
    if user.email and "email" in sign_in.scopes:
        claims["email"] = user.email
        if "xms_edov" in optional_claims:
            claims["xms_edov"] = user.email_domain_verified
    if user.idp is not None:
        # Entra adds `idp` when the account lives in another tenant than the issuer (guests).
        claims["idp"] = user.idp
    if "acct" in optional_claims:
        claims["acct"] = user.acct
    if "login_hint" in optional_claims:
        claims["login_hint"] = login_hint(user)
    if user.roles:
        claims["roles"] = list(user.roles)
    if sign_in.auth is not None:
        proof = id_token_proof(sign_in.auth, sign_in.acrs, amr=amr)
        # auth_time is an optional claim, and required when max_age was sent (OIDC 3.1.2.1).
        if not (sign_in.auth_time_requested or "auth_time" in optional_claims):
            del proof["auth_time"]
        claims |= proof
    return claims | group_claims(user, overage_limit)


def login_hint(user: MockUser) -> str:
    """The `login_hint` optional claim: opaque to apps, names the account for logout_hint."""
    return b64url(f"{LOGIN_HINT_PREFIX}{user.username}".encode())


def hinted_username(hint: str) -> str | None:
    """The username behind a login_hint the mock issued, else None."""
    try:
        text = base64.urlsafe_b64decode(hint + "=" * (-len(hint) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return text.removeprefix(LOGIN_HINT_PREFIX) if text.startswith(LOGIN_HINT_PREFIX) else None


def access_token_claims(user: MockUser, sign_in: SignIn, *, now: int, uti: str,
                        sts_host: str = "sts.windows.net") -> dict[str, Any]:
    """A Graph access token payload (v1 shape, as Graph tokens are)."""
    scp = [s.removeprefix(GRAPH_SCOPE_PREFIX) for s in sign_in.scopes if s != "offline_access"]
    return {
        "aud": GRAPH_APP_ID,
        "iss": f"https://{sts_host}/{user.tid}/",
        "iat": now,
        "nbf": now,
        "exp": now + ACCESS_TOKEN_LIFETIME_SECONDS,
        "appid": sign_in.client_id,
        "idtyp": "user",
        "name": user.name,
        "oid": user.oid,
        "scp": " ".join(scp),
        "sub": pairwise_sub(GRAPH_APP_ID, user.tid, user.oid),
        "tid": user.tid,
        "unique_name": user.username,
        "upn": user.username,
        "uti": uti,
        "ver": "1.0",
    }


def _access_token(mock: MockEntra, user: MockUser, sign_in: SignIn, base: str,
                  now: int) -> tuple[str, int]:
    """(token, seconds it lives). One access token is for one resource: a registered API's
    scope wins over Graph's."""
    api = delegated_resource(mock, sign_in.scopes, sign_in.client_id)
    if api is not None:
        return delegated_token(mock, api[0], api[1], base=base, user=user,
                               caller=sign_in.client_id, scopes=api[2], now=now), \
            token_lifetime(mock, api[0])
    uti = _opaque(16)
    mock.access_tokens[uti] = AccessGrant(
        client_id=sign_in.client_id,
        username=user.username,
        scopes=sign_in.scopes,
        expires_at=now + mock.access_token_lifetime,
    )
    key = mock.keys.current
    # Graph tokens carry a header nonce that makes them unverifiable by third parties.
    header = {"typ": "JWT", "nonce": _opaque(32), "alg": "RS256", "x5t": key.kid, "kid": key.kid}
    claims = access_token_claims(user, sign_in, now=now, uti=uti, sts_host=mock.sts_host)
    return encode_jws(header, claims, key.sign_rs256), mock.access_token_lifetime


def _id_token(mock: MockEntra, user: MockUser, sign_in: SignIn, base: str, now: int) -> str:
    client = mock.clients.get(sign_in.client_id)
    claims = id_token_claims(user, sign_in, base=base, now=now, overage_limit=mock.overage_limit,
                             optional_claims=client.optional_claims if client else (),
                             amr=mock.id_token_amr)
    claims = apply_overrides(claims, mock.faults.id_token_claims)
    # A claims-mapping app's tokens are signed with its own key (published at ?appid= only).
    key = mock.keys.app_key(client.client_id) if client and client.app_signing_key else None
    return sign_id_token(mock.keys, claims, mock.faults.sign, mock.faults.id_token_header,
                         key=key)


def mint_tokens(
    mock: MockEntra, base: str, sign_in: SignIn, *, client_info: bool
) -> dict[str, Any]:
    """The token response for `sign_in`; recorded in mock.issued."""
    home = mock.users.get(sign_in.username)
    if home is None:
        raise EntraError("invalid_grant", 50034, "The user account does not exist anymore.")
    # On a resource tenant's authority a B2B guest gets that tenant's guest object (tid, oid,
    # groups); on organizations/common, the home tenant's account.
    user = home.in_tenant(sign_in.tenant)
    now = int(mock.clock())
    access_token, lifetime = _access_token(mock, user, sign_in, base, now)
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(s for s in sign_in.scopes if s != "offline_access"),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    }
    if "offline_access" in sign_in.scopes:
        # A refreshed ID token carries no nonce (OIDC Core 12.2).
        body["refresh_token"] = mock.issue_refresh_token(dataclasses.replace(sign_in, nonce=None))
    if "openid" in sign_in.scopes:
        body["id_token"] = (
            access_token
            if mock.faults.access_token_as_id_token
            else _id_token(mock, user, sign_in, base, now)
        )
    if client_info:
        info = json.dumps({"uid": user.oid, "utid": user.tid}, separators=(",", ":"))
        body["client_info"] = b64url(info.encode())
    mock.issued.append(body)
    return body
