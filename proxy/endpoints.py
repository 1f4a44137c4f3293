"""The proxy's own small endpoints: /oauth2/userinfo, /oauth2/jwks, /ping, /ready."""

from __future__ import annotations

from aiohttp import web

from .errors import ProxyError, Unauthenticated
from .pages import NO_STORE
from .state import USER, get_state, session_cookies


async def userinfo(request: web.Request) -> web.Response:
    session = await get_state(request).sessions.load(session_cookies(request))
    if session is None:
        raise Unauthenticated("No valid session.")
    identity = session.identity
    request[USER] = identity.user
    body = identity.public_dict()
    body["user"] = identity.user
    return web.json_response(body, headers=NO_STORE)


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def ready(request: web.Request) -> web.Response:
    """Ready once discovery and keys are loaded; otherwise 503 with the reason."""
    state = get_state(request)
    try:
        await state.entra.metadata()
        await state.entra.keys()
        await state.sessions.ping()
    except ProxyError as exc:
        return web.json_response({"ready": False, "reason": exc.public}, status=503,
                                 headers=NO_STORE)
    return web.json_response({"ready": True}, headers=NO_STORE)


async def jwks(request: web.Request) -> web.Response:
    """Public keys that verify the identity assertion header."""
    signer = get_state(request).signer
    body = signer.jwks() if signer is not None else {"keys": []}
    return web.json_response(body, headers={"Cache-Control": "public, max-age=300"})

