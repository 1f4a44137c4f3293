"""App Service's /.auth/* endpoints (easy_auth = true); when off, those paths go upstream."""

from __future__ import annotations

from aiohttp import web

from . import easy_auth
from .errors import Unauthenticated
from .gateway import current_session, handle
from .login import begin_login, end_session, signed_out_page
from .pages import NO_STORE
from .state import USER, get_state


async def me(request: web.Request) -> web.StreamResponse:
    """/.auth/me: the principal (and tokens only if easy_auth_tokens) as App Service sends it."""
    state = get_state(request)
    if not state.config.identity.easy_auth:
        return await handle(request)
    session = await current_session(request, state)
    if session is None:
        raise Unauthenticated("No valid session.")
    request[USER] = session.identity.user
    body = easy_auth.auth_me(session.identity, session.tokens,
                             with_tokens=state.config.identity.easy_auth_tokens)
    return web.json_response(body, headers=NO_STORE)


async def login(request: web.Request) -> web.StreamResponse:
    """/.auth/login/aad?post_login_redirect_uri=..."""
    if not get_state(request).config.identity.easy_auth:
        return await handle(request)
    return await begin_login(request, request.query.get(easy_auth.LOGIN_REDIRECT_PARAM, "/"))


async def logout(request: web.Request) -> web.StreamResponse:
    """/.auth/logout?post_logout_redirect_uri=..., then /.auth/logout/done."""
    state = get_state(request)
    if not state.config.identity.easy_auth:
        return await handle(request)
    if request.path == easy_auth.LOGOUT_DONE_PATH:
        return signed_out_page(request)
    return await end_session(request, request.query.get(easy_auth.LOGOUT_REDIRECT_PARAM),
                             done=easy_auth.LOGOUT_DONE_PATH)
