"""`server.http_redirect_listen`: a plain HTTP listener that sends every request to https.

Every request but `/ping` is answered 308 (method and body kept) to the same path and query
on https. The Host header chooses the target only when it names a host the proxy serves:
server.public_url's, or an upstream's `host` (exact, or under its `*.domain`); any other
Host, a malformed one or none at all gets server.public_url's host. So a forged Host can
never turn the listener into an open redirect. The port is server.public_url's (the https
port clients use, which may differ from the one the proxy binds behind a port mapping).
The listener reads no cookie and runs no sign-in: nothing secret is served over plain HTTP.
"""

from __future__ import annotations

import logging

from aiohttp import web
from yarl import URL

from .config import Config
from .errors import BadRequest
from .request_target import normal_host
from .runner import CONNECTION_LIMITS, ConnectionLimits

log = logging.getLogger("proxy")


class RedirectTargets:
    """The https origin to send a request to, given its Host header."""

    def __init__(self, config: Config) -> None:
        public = URL(config.server.public_url)
        self.public_host = (public.host or "").lower()
        port = public.explicit_port
        self.port = f":{port}" if port and port != 443 else ""
        hosts = {self.public_host} | {u.host.lower() for u in config.upstreams if u.host}
        self.exact = frozenset(h for h in hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))

    def host_for(self, values: list[str]) -> str:
        """The request's host if the proxy serves it, else public_url's host."""
        if len(values) != 1:
            return self.public_host
        try:
            host, _ = normal_host(values[0].strip(), "http")
        except BadRequest:
            return self.public_host
        if host in self.exact or any(host.endswith(s) and len(host) > len(s)
                                     for s in self.suffixes):
            return host
        return self.public_host

    def location(self, values: list[str], path_qs: str) -> str:
        return f"https://{self.host_for(values)}{self.port}{path_qs}"


def redirect_app(config: Config) -> web.Application:
    targets = RedirectTargets(config)
    server_header = config.server.server_header

    async def redirect(request: web.Request) -> web.Response:
        # rel_url: path and query only, also for an absolute-form target (GET http://x/ ...).
        path_qs = request.rel_url.raw_path_qs
        if request.rel_url.raw_path == "/ping":
            return web.Response(text="OK", headers={"Server": server_header})
        location = targets.location(request.headers.getall("Host", []), path_qs)
        return web.Response(status=308, headers={"Location": location,
                                                 "Server": server_header,
                                                 "Cache-Control": "no-store"})

    app = web.Application(handler_args={"max_line_size": 16 * 1024,
                                        "keepalive_timeout": config.server.keepalive_timeout})
    app[CONNECTION_LIMITS] = ConnectionLimits(config.server.header_timeout,
                                              config.server.max_connections)
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app
