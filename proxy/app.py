"""build_app(config): routes, middleware and the one cleanup_ctx that owns every client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from . import endpoints, forward_auth, gateway, login
from .authorize import Policy
from .config import Config
from .headers import owned_names
from .middleware import outer
from .oidc.client import EntraClient, load_credential
from .routes import RouteTable
from .session.factory import build_store
from .session.login_state import LoginStates
from .state import STATE, State
from .upstream import new_client

# Session cookies can be chunked to several 4 KB cookies: accept header lines that large.
MAX_FIELD_SIZE = 40 * 1024


def build_app(config: Config) -> web.Application:
    app = web.Application(handler_args={"max_field_size": MAX_FIELD_SIZE,
                                        "max_line_size": 16 * 1024},
                          # Bodies the proxy itself reads (the sign-out form) are tiny;
                          # forwarded bodies stream and are not bound by this.
                          middlewares=[outer], client_max_size=64 * 1024)
    # Built here so a bad regex or table fails at startup, not on the first request.
    routes = RouteTable(config.upstreams, config.access)
    credential = load_credential(config.azure)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        idp_http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        upstream_http = new_client()
        sessions = build_store(config.session)
        app[STATE] = State(
            config=config,
            entra=EntraClient(config, idp_http, credential),
            sessions=sessions,
            logins=LoginStates(config.session),
            routes=routes,
            upstream_http=upstream_http,
            owned_headers=owned_names(config.identity.headers, config.identity.assertion_header),
            trusted=config.server.trusted_networks,
            extra_claims=(*config.identity.headers.values(), "login_hint"),
            policy=Policy.from_config(config.access),
        )
        yield
        await sessions.close()
        await upstream_http.close()
        await idp_http.close()

    app.cleanup_ctx.append(lifecycle)
    connector = config.azure.connector_id
    app.router.add_get("/ping", endpoints.ping)
    app.router.add_get("/ready", endpoints.ready)
    app.router.add_get("/oauth2/start", login.start)
    app.router.add_get(f"/callback/{connector}", login.callback)
    app.router.add_route("GET", "/oauth2/sign_out", login.sign_out)
    app.router.add_route("POST", "/oauth2/sign_out", login.sign_out)
    app.router.add_get("/oauth2/userinfo", endpoints.userinfo)
    app.router.add_get("/oauth2/auth", forward_auth.check)
    app.router.add_get("/oauth2/signed_out", login.signed_out)
    app.router.add_get("/oauth2/frontchannel_logout", login.frontchannel_logout)
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
    return app
