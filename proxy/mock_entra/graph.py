"""The Microsoft Graph subset the proxy needs: /me, group membership, OIDC userinfo."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
import uuid
from typing import Any, Final

import jwt
from aiohttp import hdrs, web
from yarl import URL

from .faults import apply_overrides
from .state import MOCK, AccessGrant, MockEntra, origin
from .tokens import GRAPH_APP_ID, pairwise_sub
from .users import MockUser

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 999


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error_response(err: GraphError) -> web.Response:
    """Graph's error shape: {"error": {"code", "message", "innerError"}}."""
    body = {
        "error": {
            "code": err.code,
            "message": err.message,
            "innerError": {
                "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }
    headers = {hdrs.WWW_AUTHENTICATE: 'Bearer realm=""'} if err.status == 401 else {}
    return web.json_response(body, status=err.status, headers=headers)


def _authenticate(request: web.Request) -> tuple[MockEntra, AccessGrant, MockUser]:
    """The Graph access token's grant and user; the header nonce is simply ignored."""
    mock = request.app[MOCK]
    if mock.faults.graph_status is not None:
        raise GraphError(mock.faults.graph_status, "ServiceNotAvailable", "Injected fault.")
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        key = mock.keys.find(str(jwt.get_unverified_header(token).get("kid")))
        if key is None:
            raise jwt.InvalidTokenError("unknown signing key")
        claims = jwt.decode(token, key.public_key, algorithms=["RS256"], audience=GRAPH_APP_ID)
    except jwt.InvalidTokenError as exc:
        raise GraphError(
            401, "InvalidAuthenticationToken", f"Access token is invalid: {exc}"
        ) from exc
    grant = mock.access_tokens.get(str(claims.get("uti")))
    user = mock.users.get(grant.username) if grant else None
    if grant is None or user is None:
        raise GraphError(401, "InvalidAuthenticationToken", "Access token is not recognised.")
    return mock, grant, user


async def me(request: web.Request) -> web.Response:
    try:
        _, _, user = _authenticate(request)
    except GraphError as err:
        return _error_response(err)
    given, _, surname = user.name.partition(" ")
    return web.json_response(
        {
            "@odata.context": f"{origin(request)}/v1.0/$metadata#users/$entity",
            "businessPhones": [],
            "displayName": user.name,
            "givenName": given,
            "jobTitle": None,
            "mail": user.email,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": surname or None,
            "userPrincipalName": user.username,
            "id": user.oid,
        }
    )


async def get_member_objects(request: web.Request) -> web.Response:
    """POST /v1.0/me/getMemberObjects: all group ids in one response."""
    try:
        _, _, user = _authenticate(request)
        body = await _json_body(request)
        if not isinstance(body.get("securityEnabledOnly"), bool):
            raise GraphError(400, "Request_BadRequest", "securityEnabledOnly must be a boolean.")
    except GraphError as err:
        return _error_response(err)
    return web.json_response(
        {
            "@odata.context": f"{origin(request)}/v1.0/$metadata#Collection(Edm.String)",
            "value": list(user.groups),
        }
    )


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body


async def member_of(request: web.Request) -> web.Response:
    """GET /v1.0/me/transitiveMemberOf and /memberOf, paged with @odata.nextLink.

    The mock has no nested groups, so direct and transitive membership are the same. Like
    Graph, the list mixes object types: directory roles and administrative units come
    between the groups, and are not groups.
    """
    try:
        mock, _, user = _authenticate(request)
        top, skip = _paging(request)
    except GraphError as err:
        return _error_response(err)
    if request.headers.get("ConsistencyLevel", "").lower() == "eventual":
        # Advanced queries read a separate index that lags behind directory changes.
        stale = mock.graph_index_lag.get(user.username)
        user = dataclasses.replace(user, groups=stale) if stale is not None else user
    entries = _member_objects(user)
    body: dict[str, Any] = {
        "@odata.context": f"{origin(request)}/v1.0/$metadata#directoryObjects",
        "value": entries[skip : skip + top],
    }
    if skip + top < len(entries):
        query = {k: v for k, v in request.query.items() if k in ("$select", "$filter")}
        query |= {"$top": str(top), "$skiptoken": _skiptoken(skip + top)}
        body["@odata.nextLink"] = str(
            URL(origin(request)).with_path(request.path).with_query(query)
        )
    return web.json_response(body)


def _member_objects(user: MockUser) -> list[dict[str, str]]:
    groups = [{"@odata.type": "#microsoft.graph.group", "id": gid} for gid in user.groups]
    others = [{"@odata.type": "#microsoft.graph.directoryRole", "id": rid}
              for rid in user.directory_roles]
    others += [{"@odata.type": "#microsoft.graph.administrativeUnit", "id": aid}
               for aid in user.admin_units]
    middle = len(groups) // 2
    return groups[:middle] + others + groups[middle:]


def _skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(f"mock-offset:{offset}".encode()).decode("ascii")


def _paging(request: web.Request) -> tuple[int, int]:
    try:
        top = int(request.query.get("$top", DEFAULT_PAGE_SIZE))
        skip = 0
        if token := request.query.get("$skiptoken"):
            prefix, _, offset = base64.urlsafe_b64decode(token).decode("ascii").partition(":")
            if prefix != "mock-offset":
                raise ValueError(prefix)
            skip = int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise GraphError(400, "BadRequest", "Invalid $top or $skiptoken.") from exc
    if not 1 <= top <= MAX_PAGE_SIZE or skip < 0:
        raise GraphError(400, "BadRequest", f"$top must be between 1 and {MAX_PAGE_SIZE}.")
    return top, skip


async def userinfo(request: web.Request) -> web.Response:
    """GET|POST /oidc/userinfo; `sub` equals the ID token's pairwise sub."""
    try:
        mock, grant, user = _authenticate(request)
    except GraphError as err:
        return _error_response(err)
    given, _, family = user.name.partition(" ")
    claims: dict[str, Any] = {
        "sub": pairwise_sub(grant.client_id, user.tid, user.oid),
        "name": user.name,
        "family_name": family,
        "given_name": given,
        "picture": f"{origin(request)}/v1.0/me/photo/$value",
    }
    if user.email and "email" in grant.scopes:
        claims["email"] = user.email
    return web.json_response(apply_overrides(claims, mock.faults.userinfo_claims))
