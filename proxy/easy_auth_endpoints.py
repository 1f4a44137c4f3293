"""App Service's /.auth/* endpoints (easy_auth = true). When it is off those paths go
upstream: app.py routes them to the gateway then (read per request, as a reload may switch
it), so these handlers only ever run with easy_auth on."""

from __future__ import annotations

from aiohttp import web

from . import easy_auth
from .admission import EASY_AUTH_ME, admit
from .pages import NO_STORE
from .signin import begin_login, end_session, signed_out_page
from .state import get_state


async def me(request: web.Request) -> web.StreamResponse:
    """/.auth/me: the principal (and tokens only if easy_auth_tokens) as App Service sends it."""
    state = get_state(request)
    session = await admit(request, state, None, EASY_AUTH_ME)
    body = easy_auth.auth_me(session.identity, session.tokens,
                             with_tokens=state.config.identity.easy_auth_tokens)
    return web.json_response(body, headers=NO_STORE)


async def login(request: web.Request) -> web.StreamResponse:
    """/.auth/login/aad?post_login_redirect_uri=..."""
    return await begin_login(request, request.query.get(easy_auth.LOGIN_REDIRECT_PARAM, "/"))


async def logout(request: web.Request) -> web.StreamResponse:
    """/.auth/logout?post_logout_redirect_uri=..., then /.auth/logout/done."""
    if request.path == easy_auth.LOGOUT_DONE_PATH:
        return signed_out_page(request)
    return await end_session(request, request.query.get(easy_auth.LOGOUT_REDIRECT_PARAM),
                             done=easy_auth.LOGOUT_DONE_PATH)
