"""POST /{tenant}/oauth2/v2.0/token: authorization_code (with PKCE), refresh_token and
client_credentials (app-only tokens for a registered API, `api_tokens`)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
from collections.abc import Mapping

from aiohttp import hdrs, web

from .api_tokens import app_only_token
from .client_auth import authenticate_client
from .errors import EntraError, json_error, missing_parameter, unknown_tenant
from .state import MOCK, CodeGrant, MockEntra, SignIn, issuer_base, origin
from .tenants import Tenant
from .tokens import mint_tokens
from .users import MockClient

_MASK = "********"
_SECRET_FIELDS = ("client_secret",)


async def token(request: web.Request) -> web.Response:
    mock = request.app[MOCK]
    form = await request.post()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    mock.token_requests.append(
        {name: _MASK if name in _SECRET_FIELDS else value for name, value in fields.items()}
    )
    if mock.faults.token_delay > 0:
        await asyncio.sleep(mock.faults.token_delay)
    if mock.faults.token_redirect is not None:
        return web.Response(status=307, headers={hdrs.LOCATION: mock.faults.token_redirect})
    if mock.faults.token_error is not None:
        status, body = mock.faults.token_error
        return web.json_response(body, status=status)
    base = origin(request)
    try:
        segment = request.match_info["tenant"]
        tenant = mock.resolve_tenant(segment)
        if tenant is None:
            raise unknown_tenant(segment)
        token_urls = {f"{base}/{s}/oauth2/v2.0/token" for s in (segment, tenant.canonical)}
        auth_header = request.headers.get(hdrs.AUTHORIZATION)
        client = authenticate_client(mock, auth_header, fields, token_urls)
        if fields.get("grant_type") == "client_credentials":
            body = app_only_token(mock, base, tenant, client, fields)
            return web.json_response(body, headers={"Cache-Control": "no-store",
                                                    "Pragma": "no-cache"})
        sign_in = _grant(mock, tenant, client, fields)
        body = mint_tokens(mock, issuer_base(request), sign_in,
                           client_info=fields.get("client_info") == "1")
    except EntraError as err:
        return json_error(err, base, mock.clock())
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _grant(
    mock: MockEntra, tenant: Tenant, client: MockClient, fields: Mapping[str, str]
) -> SignIn:
    grant_type = fields.get("grant_type")
    if grant_type == "authorization_code":
        return _redeem_code(mock, tenant, client, fields)
    if grant_type == "refresh_token":
        return _redeem_refresh_token(mock, client, fields)
    if not grant_type:
        raise missing_parameter("grant_type")
    raise EntraError(
        "unsupported_grant_type",
        70003,
        f"The app requested an unsupported grant type '{grant_type}'.",
    )


def _invalid_grant(code: int, message: str) -> EntraError:
    return EntraError("invalid_grant", code, message)


def _redeem_code(
    mock: MockEntra, tenant: Tenant, client: MockClient, fields: Mapping[str, str]
) -> SignIn:
    code = fields.get("code")
    if not code:
        raise missing_parameter("code")
    grant = mock.take_code(code)
    if grant is None:
        if mock.code_was_used(code):
            raise _invalid_grant(
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new "
                "valid code or use an existing refresh token.",
            )
        raise _invalid_grant(9002313, "Invalid request. Request is malformed or invalid.")
    if mock.clock() > grant.expires_at:
        raise _invalid_grant(70008, "The provided authorization code or refresh token has expired.")
    if grant.sign_in.client_id != client.client_id:
        raise _invalid_grant(70000, "The code was issued to another application.")
    if grant.sign_in.tenant != tenant.canonical:
        raise _invalid_grant(700005, "Provided Authorization Code is intended for another tenant.")
    if fields.get("redirect_uri") != grant.redirect_uri:
        raise _invalid_grant(
            500112,
            "The reply address does not match the reply address provided when "
            "requesting Authorization code.",
        )
    _verify_pkce(grant, fields.get("code_verifier"))
    return grant.sign_in


def pkce_challenge(verifier: str, method: str) -> str:
    """RFC 7636 §4.2: S256 = base64url(sha256(verifier)) without padding."""
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _verify_pkce(grant: CodeGrant, verifier: str | None) -> None:
    if grant.code_challenge is None:
        return
    if not verifier or not verifier.isascii():
        raise _invalid_grant(501481, "The Code_Verifier was not sent with the token request.")
    expected = grant.code_challenge.encode()
    actual = pkce_challenge(verifier, grant.code_challenge_method).encode()
    if not hmac.compare_digest(expected, actual):
        raise _invalid_grant(
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the "
            "authorization request.",
        )


def _redeem_refresh_token(mock: MockEntra, client: MockClient, fields: Mapping[str, str]) -> SignIn:
    refresh_token = fields.get("refresh_token")
    if not refresh_token:
        raise missing_parameter("refresh_token")
    sign_in = mock.refresh_tokens.get(refresh_token)
    if sign_in is None:
        raise _invalid_grant(70008, "The refresh token has expired or was revoked. Sign in again.")
    if sign_in.client_id != client.client_id:
        raise _invalid_grant(70000, "The refresh token was issued to another application.")
    requested = tuple(fields.get("scope", "").split())
    if not requested:
        return sign_in
    # Keep offline_access and openid from the original grant, as Entra does.
    kept = tuple(
        s for s in ("openid", "offline_access") if s in sign_in.scopes and s not in requested
    )
    return dataclasses.replace(sign_in, scopes=requested + kept)
