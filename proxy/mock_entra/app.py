"""The mock's web.Application, its routes, and run_mock (loopback only)."""

from __future__ import annotations

import ipaddress
from email.utils import formatdate

from aiohttp import hdrs, web

from .authorize import authorize
from .discovery import jwks, openid_configuration, v1_openid_configuration
from .graph import get_member_objects, me, member_of, userinfo
from .logout import logout
from .pages import esc, html_page, index_page
from .state import MOCK, MockEntra, origin
from .token_endpoint import token


def create_app(mock: MockEntra) -> web.Application:
    """Serve `mock`; every URL it emits is built from the request's origin."""
    app = web.Application()
    app[MOCK] = mock
    app.on_response_prepare.append(_date_header)
    router = app.router
    router.add_get("/", index)
    router.add_get("/error", error_info)
    router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration)
    router.add_get("/{tenant}/discovery/v2.0/keys", jwks)
    # v1: the same key ring, as Entra's v1 and v2 key sets hold the same keys in practice.
    router.add_get("/{tenant}/.well-known/openid-configuration", v1_openid_configuration)
    router.add_get("/{tenant}/discovery/keys", jwks)
    for method in ("GET", "POST"):
        router.add_route(method, "/{tenant}/oauth2/v2.0/authorize", authorize)
        router.add_route(method, "/{tenant}/oauth2/v2.0/logout", logout)
        router.add_route(method, "/oidc/userinfo", userinfo)
    router.add_post("/{tenant}/oauth2/v2.0/token", token)
    router.add_get("/v1.0/me", me)
    router.add_post("/v1.0/me/getMemberObjects", get_member_objects)
    router.add_get("/v1.0/me/transitiveMemberOf", member_of)
    router.add_get("/v1.0/me/memberOf", member_of)
    return app


async def _date_header(request: web.Request, response: web.StreamResponse) -> None:
    """`Date` from the mock's own clock, as a server's comes from its clock (RFC 9110 §6.6.1)."""
    mock = request.app[MOCK]
    response.headers[hdrs.DATE] = formatdate(mock.clock() + mock.faults.date_offset,
                                             usegmt=True)


async def index(request: web.Request) -> web.Response:
    mock = request.app[MOCK]
    tenants = {
        "common": "work and personal accounts",
        "organizations": "work accounts",
        "consumers": "personal accounts",
    }
    tenants |= {domain: f"verified domain of {tid}" for domain, tid in mock.domains.items()}
    tenants |= {tid: "tenant" for tid in sorted(mock.tenants)}
    return index_page(origin(request), tenants, mock.users.values())


async def error_info(request: web.Request) -> web.Response:
    """Target of every `error_uri` the mock emits."""
    code = request.query.get("code", "")
    return html_page("Error", f"<h1>Error AADSTS{esc(code)}</h1><p>See the error description.</p>")


def ensure_loopback(host: str) -> None:
    """The mock signs tokens for anyone who asks: it must never be reachable off-host."""
    if host.lower() == "localhost":
        return
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"mock Entra ID listens on loopback only (127.0.0.0/8, ::1, localhost), not {host!r}"
        )


async def run_mock(mock: MockEntra, host: str = "127.0.0.1", port: int = 9100) -> web.AppRunner:
    """Start serving `mock` on host:port; the caller cleans the runner up."""
    ensure_loopback(host)
    runner = web.AppRunner(create_app(mock))
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]"), port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
