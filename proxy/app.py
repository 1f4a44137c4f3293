"""build_app(config): routes, middleware and the one cleanup_ctx that owns every client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp
from aiohttp import WSCloseCode, web
from aiohttp.abc import AbstractResolver
from aiohttp.typedefs import Handler

from . import admin, easy_auth, easy_auth_endpoints, endpoints, forward_auth, gateway, login, logs
from .assertion import AssertionKeyError, AssertionSigner
from .authorize import Policy
from .background import Tasks
from .config import Config
from .errors import ConfigError
from .headers import owned_names
from .identity import ClaimRules
from .metrics import CountingBackend, Metrics
from .metrics import serve as serve_metrics
from .middleware import outer
from .oidc.client import EntraClient, load_credential
from .oidc.client_auth import ClientCredential
from .oidc.credentials import CredentialError
from .oidc.tokens import SessionBinding
from .routes import RouteTable
from .runner import CONNECTION_LIMITS, ConnectionLimits
from .server_tls import ServerTls, new_context
from .session.factory import build_store
from .session.login_state import LoginStates
from .state import METRICS, STATE, State, StateCell, get_state
from .upstream import new_client
from .upstream_client import UpstreamPool
from .upstream_identity import IdentityHeaders
from .upstream_tls import tls_context, warn_insecure

log = logging.getLogger("proxy")
# Session cookies can be chunked to several 4 KB cookies: accept header lines that large.
MAX_FIELD_SIZE = 40 * 1024
RETIRE_AFTER = 60.0  # seconds a replaced session store stays open for in-flight requests
ConfigLoader = Callable[[], Config]
# [server] keys the listener and its connections are built with (a reload cannot reach them).
RESTART_ONLY = ("listen", "header_timeout", "keepalive_timeout", "max_connections",
                "tls_cert_file", "tls_key_file", "tls_watch_interval", "http_redirect_listen")
TASKS = web.AppKey("tasks", Tasks)  # every background task and timer the app started
# The listener's TLS (server.tls_cert_file): its context and the current certificate.
SERVER_TLS = web.AppKey("server_tls", ServerTls)


def build_state(config: Config, *, idp_http: aiohttp.ClientSession,
                upstream_http: aiohttp.ClientSession, upstream_pool: UpstreamPool,
                credential: ClientCredential,
                routes: RouteTable, metrics: Metrics,
                previous: State | None = None) -> State:
    # Unchanged [session] settings keep the store (a memory store's sessions survive a
    # reload) and the login states (replay protection survives too).
    # The client_id too: salts and store keys are derived from it.
    same = (previous is not None and previous.config.session == config.session
            and previous.config.azure.client_id == config.azure.client_id)
    signer = _signer(config, previous)
    return State(
        config=config,
        entra=EntraClient(config, idp_http, credential, metrics),
        sessions=(previous.sessions if same and previous
                  else build_store(config.session, lambda b: CountingBackend(b, metrics),
                              config.azure.client_id)),
        logins=(previous.logins if same and previous
                else LoginStates(config.session, config.azure.client_id)),
        routes=routes,
        upstream_http=upstream_http,
        upstream_pool=upstream_pool,
        owned_headers=owned_names(config.identity.headers, config.identity.assertion_header),
        trusted=config.server.trusted_networks,
        # login_hint: sign-out's logout_hint; acct and idp: members_only tells guests apart.
        claim_rules=ClaimRules((*config.identity.headers.values(), "login_hint", "acct", "idp"),
                               config.identity.trust_unverified_email),
        policy=Policy.from_config(config.access),
        signer=signer,
        upstream_identity=IdentityHeaders(config.identity, signer, config.policy_groups),
        binding=SessionBinding(config.azure),
        scheme=config.server.origin.scheme,
    )


def _signer(config: Config, previous: State | None) -> AssertionSigner | None:
    """The assertion signer; a reload keeps it (and its generated key) when nothing changed."""
    identity = config.identity
    if not identity.assertion_header:
        return None
    if (previous is not None and previous.signer is not None
            and previous.config.identity.assertion_key_file == identity.assertion_key_file
            and previous.config.server.public_url == config.server.public_url):
        return previous.signer
    issuer = str(config.server.origin)
    if not identity.assertion_key_file:
        return AssertionSigner.generate(issuer)
    try:
        return AssertionSigner.from_file(issuer, identity.assertion_key_file)
    except AssertionKeyError as exc:
        raise ConfigError([f"identity.assertion_key_file: {exc}"]) from None


async def reload(app: web.Application, loader: ConfigLoader) -> bool:
    """SIGHUP: swap in a State from the new config; on any error keep the running one."""
    cell = app[STATE]
    old = cell.current
    try:
        config = loader()
        # Unchanged [azure]: keep the credential (a managed identity's cached token).
        credential = (old.entra.credential if config.azure == old.config.azure
                      else load_credential(config.azure))
        routes = RouteTable(config.upstreams, config.access)
        warn_insecure(config.upstreams)
        new = build_state(config, idp_http=old.entra.http, upstream_http=old.upstream_http,
                          upstream_pool=old.upstream_pool, credential=credential,
                          routes=routes, metrics=app[METRICS], previous=old)
    except ConfigError as exc:
        log.error("config reload refused, keeping the running config: %s",
                  "; ".join(exc.problems))
        return False
    for key in RESTART_ONLY:
        if getattr(config.server, key) != getattr(old.config.server, key):
            log.warning("config reload: server.%s changes take effect after a restart", key)
    cell.current = new
    if cell.current.sessions is not old.sessions:
        app[TASKS].later(RETIRE_AFTER, old.sessions.close)
    log.info("config reloaded")
    return True


def check_files(config: Config) -> None:
    """Load what config only names (certificate, federated token file, assertion key, the
    listener's TLS pair): ConfigError if unusable."""
    try:
        load_credential(config.azure).check_files()
    except CredentialError as exc:
        raise ConfigError([f"azure.federated_token_file: {exc}"]) from None
    if config.server.tls_cert_file and config.server.tls_key_file:
        new_context(config.server.tls_cert_file, config.server.tls_key_file)
    if config.identity.assertion_header and config.identity.assertion_key_file:
        _signer(config, None)
    for index, upstream in enumerate(config.upstreams):
        tls_context(upstream, f"upstreams[{index}]")


def build_app(config: Config, loader: ConfigLoader | None = None, *,
              resolver: AbstractResolver | None = None) -> web.Application:
    """`resolver` resolves the sign-in service's host names (default: the system's); a
    split-horizon DNS, or a test that serves a national cloud's hosts on loopback."""
    server = config.server
    app = web.Application(handler_args={"max_field_size": MAX_FIELD_SIZE,
                                        "max_line_size": 16 * 1024,
                                        "keepalive_timeout": server.keepalive_timeout},
                          # Bodies the proxy itself reads (the sign-out form) are tiny;
                          # forwarded bodies stream and are not bound by this.
                          middlewares=[outer], client_max_size=64 * 1024)
    logs.quiet_aiohttp()
    # Built here so a bad regex, table or certificate fails at startup, not on a request.
    routes = RouteTable(config.upstreams, config.access)
    warn_insecure(config.upstreams)
    credential = load_credential(config.azure)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        idp_http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                         connector=aiohttp.TCPConnector(resolver=resolver))
        upstream_http = new_client()
        # Idle upstream connections: kept 30 s (aiohttp's keep-alive before), at most 256
        # per origin; an answer buffers 256 KiB of body before reading from it pauses.
        upstream_pool = UpstreamPool(keepalive=30.0, max_idle=256, high_water=256 * 1024)
        app[STATE] = StateCell(build_state(config, idp_http=idp_http,
                                           upstream_http=upstream_http,
                                           upstream_pool=upstream_pool, credential=credential,
                                           routes=routes, metrics=app[METRICS]))
        if loader is not None:
            _on_sighup(app, loader)
        if SERVER_TLS in app and app[SERVER_TLS].interval > 0:
            app[TASKS].spawn(app[SERVER_TLS].watch())
        async with AsyncExitStack() as stack:
            if config.server.metrics_listen:
                await stack.enter_async_context(
                    asynccontextmanager(serve_metrics)(app[METRICS],
                                                       config.server.metrics_listen,
                                                       admin.routes(app[STATE])))
            yield
        await app[TASKS].close()  # before the clients a pending reload or retirement uses
        await app[STATE].current.sessions.close()
        await upstream_pool.close()
        await upstream_http.close()
        await idp_http.close()

    # Read by ProxyRunner when it makes the server: fixed for the life of the listener.
    app[CONNECTION_LIMITS] = ConnectionLimits(server.header_timeout, server.max_connections)
    app[METRICS] = Metrics()
    app[TASKS] = Tasks()
    if server.tls:  # loads the pair now: a bad one fails the start, not the first handshake
        app[SERVER_TLS] = ServerTls(server)
    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_websockets)
    _add_routes(app)
    return app


def _on_sighup(app: web.Application, loader: ConfigLoader) -> None:
    import signal

    def hangup() -> None:
        if SERVER_TLS in app:  # the certificate files too, whatever becomes of the config
            app[SERVER_TLS].reload("SIGHUP")
        app[TASKS].spawn(reload(app, loader))

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
        log.warning("SIGHUP reload is not available in this process")


async def close_websockets(app: web.Application) -> None:
    for ws in list(app[STATE].websockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"proxy shutting down")


def _easy_auth(handler: Handler) -> Handler:
    """/.auth/* are the proxy's only while identity.easy_auth is on (read per request: a
    reload may switch it); otherwise those paths belong to the upstream."""
    async def route(request: web.Request) -> web.StreamResponse:
        if not get_state(request).config.identity.easy_auth:
            return await gateway.handle(request)
        return await handler(request)
    return route


async def _callback(request: web.Request) -> web.StreamResponse:
    # Matched dynamically so a reload may change connector_id; other paths go upstream.
    if request.match_info["connector"] != get_state(request).config.azure.connector_id:
        return await gateway.handle(request)
    return await login.callback(request)


def _add_routes(app: web.Application) -> None:
    app.router.add_get("/ping", endpoints.ping)
    app.router.add_get("/ready", endpoints.ready)
    app.router.add_get("/oauth2/start", login.start)
    app.router.add_get("/callback/{connector}", _callback)
    app.router.add_route("GET", "/oauth2/sign_out", login.sign_out)
    app.router.add_route("POST", "/oauth2/sign_out", login.sign_out)
    app.router.add_get("/oauth2/userinfo", endpoints.userinfo)
    app.router.add_get("/oauth2/auth", forward_auth.check)
    app.router.add_get("/oauth2/signed_out", login.signed_out)
    app.router.add_get("/oauth2/frontchannel_logout", login.frontchannel_logout)
    app.router.add_get("/oauth2/jwks", endpoints.jwks)
    app.router.add_get(easy_auth.ME_PATH, _easy_auth(easy_auth_endpoints.me))
    app.router.add_get(easy_auth.LOGIN_PATH, _easy_auth(easy_auth_endpoints.login))
    app.router.add_get(easy_auth.LOGOUT_PATH, _easy_auth(easy_auth_endpoints.logout))
    app.router.add_get(easy_auth.LOGOUT_DONE_PATH, _easy_auth(easy_auth_endpoints.logout))
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
