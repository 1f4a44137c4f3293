"""GET|POST /{tenant}/oauth2/v2.0/logout (ENTRA.md §6)."""

from __future__ import annotations

import jwt
from aiohttp import web

from .errors import unknown_tenant
from .pages import error_page, signed_out_page
from .redirects import found, logout_redirect_allowed
from .state import MOCK, MockEntra, origin, request_params
from .tokens import hinted_username

# Recorded for every logout in mock.logouts; absent parameters are "".
LOGOUT_FIELDS = ("post_logout_redirect_uri", "logout_hint", "id_token_hint", "client_id", "state")


async def logout(request: web.Request) -> web.Response:
    """End the Entra session and return to the app if its address is registered."""
    mock = request.app[MOCK]
    params = await request_params(request)
    segment = request.match_info["tenant"]
    if mock.resolve_tenant(segment) is None:
        return error_page(unknown_tenant(segment), origin(request), mock.clock())
    sid = params.get("sid") or _sid_from_hint(params.get("id_token_hint"))
    if sid:
        mock.end_session(sid)
    # logout_hint (the login_hint claim) names the account: all its sessions end.
    hinted = hinted_username(params.get("logout_hint", ""))
    for each, username in list(mock.sessions.items()):
        if hinted is not None and username == hinted:
            mock.end_session(each)
            sid = sid or each
    target = params.get("post_logout_redirect_uri", "")
    allowed = bool(target) and logout_redirect_allowed(
        _registered_uris(mock, params.get("client_id")), target
    )
    record = {"tenant": segment} | {name: params.get(name, "") for name in LOGOUT_FIELDS}
    mock.logouts.append(record | {"sid": sid, "redirected": "true" if allowed else "false"})
    # An unregistered address gets the signed-out page: the mock is no open redirector.
    return found(target) if allowed else signed_out_page()


def _sid_from_hint(id_token_hint: str | None) -> str:
    """The hint is only a hint: read its `sid` without verifying it."""
    if not id_token_hint:
        return ""
    try:
        claims = jwt.decode(id_token_hint, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return ""
    return str(claims.get("sid", ""))


def _registered_uris(mock: MockEntra, client_id: str | None) -> list[str]:
    client = mock.clients.get(client_id or "")
    if client is not None:
        return list(client.redirect_uris)
    return [uri for each in mock.clients.values() for uri in each.redirect_uris]
