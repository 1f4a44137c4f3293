"""The proxy's own small endpoints: /oauth2/userinfo, /oauth2/jwks, /ping, /ready."""

from __future__ import annotations

from aiohttp import web

from .admission import USERINFO, admit
from .errors import ProxyError
from .pages import NO_STORE
from .state import get_state


async def userinfo(request: web.Request) -> web.Response:
    session = await admit(request, get_state(request), None, USERINFO)
    identity = session.identity
    body = identity.public_dict()
    body["user"] = identity.user
    return web.json_response(body, headers=NO_STORE)


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def ready(request: web.Request) -> web.Response:
    """Ready once discovery and keys are loaded, the session store answers and the client
    credential can be produced; otherwise 503 with the reason."""
    state = get_state(request)
    try:
        await state.entra.metadata()
        await state.entra.keys()
        await state.sessions.ping()
        # The client credential too: a federated token file that cannot be read, or a
        # managed identity endpoint that does not answer, fails every sign-in.
        await state.entra.credential.probe(state.entra.http)
    except ProxyError as exc:
        return web.json_response({"ready": False, "reason": exc.public}, status=503,
                                 headers=NO_STORE)
    return web.json_response({"ready": True}, headers=NO_STORE)


async def jwks(request: web.Request) -> web.Response:
    """Public keys that verify the identity assertion header."""
    signer = get_state(request).signer
    body = signer.jwks() if signer is not None else {"keys": []}
    return web.json_response(body, headers={"Cache-Control": "public, max-age=300"})

