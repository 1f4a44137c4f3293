"""The route table: host (exact or *.domain), then longest path prefix; public-path regexes."""

from __future__ import annotations

import posixpath
import re
import ssl
from dataclasses import dataclass
from urllib.parse import unquote

from yarl import URL

from .authorize import Policy
from .config import AccessPolicyConfig, UpstreamConfig
from .upstream_tls import tls_context

# A public path must be unambiguous: no encoded or literal separators, dot segments or path
# parameters that an upstream might read differently from us (oauth2-proxy/Pomerium advisories).
_AMBIGUOUS_RAW = re.compile(r"%(2f|5c|25|00|3b|23|3f)|%u[0-9a-f]{4}|[\\;]", re.I)
_AMBIGUOUS_DECODED = re.compile(r"//|/\.\.?(/|$)|[\x00-\x1f\x7f#?]")


# What normalize_path has work to do for: anything else is already in normal form.
_NOT_NORMAL = re.compile(r"[%\\;]|/\.|//")


def normalize_path(raw_path: str) -> str:
    """The decoded path as the most lenient upstream reads it: `\\` is `/` (IIS), `;params`
    are dropped (Tomcat, Jetty, Spring), dot segments are resolved. Routes and their
    policies are chosen on this, so `/admin;x/secret` is still under `/admin`."""
    path = raw_path.partition("?")[0]
    if path.startswith("/") and not _NOT_NORMAL.search(path):
        return path  # the common case: nothing to decode, drop or resolve
    return _normalize(raw_path)


def _normalize(raw_path: str) -> str:
    decoded = unquote(raw_path.split("?", 1)[0]).replace("\\", "/") or "/"
    decoded = "/".join(segment.split(";", 1)[0] for segment in decoded.split("/")) or "/"
    normalized = posixpath.normpath(decoded)
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    if decoded.endswith("/") and normalized != "/":
        normalized += "/"
    return normalized if normalized.startswith("/") else "/" + normalized


def is_plain_path(raw_path: str) -> bool:
    """True when the path has exactly one reading (public rules only apply to such paths)."""
    path = raw_path.split("?", 1)[0]
    if _AMBIGUOUS_RAW.search(path):
        return False
    try:  # overlong or invalid UTF-8 (%c0%ae for ".") has more than one reading too
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        return False
    return not _AMBIGUOUS_DECODED.search(decoded)


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    host: str
    upstream: URL
    public: tuple[re.Pattern[str], ...]
    preserve_host: bool
    strip_prefix: bool
    case_sensitive: bool  # false: /ADMIN is /admin, as ASP.NET, IIS and Express read it
    timeout: float
    connect_timeout: float
    max_connections: int  # open connections to `origin` at once
    tls: ssl.SSLContext | None  # https: this route's context (None: system trust)
    server_name: str | None  # https: the name verified and sent as SNI (None: the host)
    policy: Policy
    audience: str  # the `aud` of identity assertions sent on this route (route_audience)
    base: str  # the upstream URL without a trailing slash, for joining raw paths
    origin: tuple[str, str, int]  # (scheme, host, port): the upstream client's pool key
    prefix: str  # the upstream URL's own path, without a trailing slash ("" for none)
    name: str  # host + path: the route's label in logs and metrics
    under: str  # the path without a trailing slash ("" for "/"): the prefix a lookup keys on
    # Authorization: Bearer <the user's token for azure.upstream_scopes>, never the client's
    pass_authorization: bool = False

    def is_public(self, raw_path: str) -> bool:
        if not self.public or not is_plain_path(raw_path):
            return False
        path = unquote(raw_path.split("?", 1)[0])
        return any(p.search(path) for p in self.public)

    def upstream_path(self, raw_path: str) -> str:
        """Path (and query) to request upstream; raw unless the prefix is stripped."""
        if not self.strip_prefix or not self.under:
            return raw_path  # no prefix to strip ("/", or only slashes)
        path, sep, query = raw_path.partition("?")
        # Cut after as many segments as the prefix has, not as many characters: the path
        # may spell the prefix in another case (and lower() may change a length).
        normalized = normalize_path(path)
        cut = -1
        for _ in range(self.under.count("/") + 1):
            cut = normalized.find("/", cut + 1)
            if cut < 0:
                break
        rest = normalized[cut:] if cut >= 0 else "/"
        encoded = URL.build(path=rest).raw_path
        return encoded + sep + query

    def upstream_target(self, raw_path: str) -> str:
        """The request target sent upstream: the upstream URL's path, then this request's."""
        return self.prefix + self.upstream_path(raw_path)


def route_audience(u: UpstreamConfig) -> str:
    """The assertion audience of one route: `assertion_audience`, else the upstream's origin
    plus the route's path (no trailing slash), plus `?host=` the route's host when it has
    one. Two routes never share it by default, even on one origin or behind one ingress,
    so an assertion for one route is refused by the check another route's app makes."""
    if u.assertion_audience:
        return u.assertion_audience
    audience = str(URL(u.url).origin()) + u.path.rstrip("/")
    return f"{audience}?host={u.host.lower()}" if u.host else audience


def _origin(url: URL) -> tuple[str, str, int]:
    # yarl's port is already the scheme's default (80, 443) when the URL names none
    return (url.scheme, url.host or "", url.port or 0)


def _route(i: int, u: UpstreamConfig, default: AccessPolicyConfig) -> Route:
    url = URL(u.url)
    tls = tls_context(u, f"upstreams[{i}]")
    return Route(
        path=u.path, host=u.host.lower(), upstream=url,
        public=tuple(re.compile(p) for p in u.public),
        preserve_host=u.preserve_host, strip_prefix=u.strip_prefix,
        case_sensitive=u.case_sensitive, timeout=u.timeout,
        connect_timeout=u.connect_timeout, max_connections=u.max_connections,
        tls=tls, server_name=u.server_name or None,
        policy=Policy.from_config(u.access if u.access is not None else default),
        audience=route_audience(u), base=u.url.rstrip("/"), origin=_origin(url),
        prefix=url.raw_path.rstrip("/"),
        name=f"{u.host.lower()}{u.path}" if u.host else u.path,
        under=u.path.rstrip("/"),
        pass_authorization=u.pass_authorization_header,
    )


class _Prefixes:
    """One host's path routes, keyed by prefix: a lookup tries the path's own segment
    boundaries, longest first, so it costs the same for 1 route or 1,000."""

    __slots__ = ("exact", "folded", "longest")

    def __init__(self) -> None:
        self.exact: dict[str, Route] = {}  # case_sensitive routes
        self.folded: dict[str, Route] = {}  # the rest, keyed lower-case
        self.longest = 0  # no prefix is longer: the lookup starts at most this far in

    def add(self, route: Route) -> None:
        key = route.under if route.case_sensitive else route.under.lower()
        table = self.exact if route.case_sensitive else self.folded
        table.setdefault(key, route)  # the first of duplicate routes wins, as before
        self.longest = max(self.longest, len(key))

    def find(self, path: str) -> Route | None:
        if not self.longest:  # only "/" routes (one upstream): no prefix to look for
            exact = self.exact.get("")
            return exact if exact is not None else self.folded.get("")
        found = _longest(self.folded, path.lower(), self.longest) if self.folded else None
        if self.exact:
            exact = _longest(self.exact, path, self.longest)
            if exact is not None and (found is None or len(exact.under) >= len(found.under)):
                return exact
        return found


def _longest(table: dict[str, Route], path: str, longest: int) -> Route | None:
    end = len(path)
    if end > longest:  # a prefix ends at a "/" no further in than the longest key
        end = path.rfind("/", 0, longest + 1)
    while end > 0:
        route = table.get(path[:end])
        if route is not None:
            return route
        end = path.rfind("/", 0, end)
    return table.get("")  # the "/" route, if any


class RouteTable:
    """Compiled once at startup: exact hosts in a dict, wildcard hosts by suffix, then the
    host-less routes; within each, the longest path prefix. `lookup` is per request."""

    def __init__(self, upstreams: tuple[UpstreamConfig, ...], default: AccessPolicyConfig) -> None:
        self.routes = tuple(_route(i, u, default) for i, u in enumerate(upstreams))
        self._hosts: dict[str, _Prefixes] = {}
        self._wildcards: dict[str, _Prefixes] = {}  # ".example.com" for *.example.com
        self._any = _Prefixes()
        for route in self.routes:
            if not route.host:
                group = self._any
            elif route.host.startswith("*."):
                group = self._wildcards.setdefault(route.host[1:], _Prefixes())
            else:
                group = self._hosts.setdefault(route.host, _Prefixes())
            group.add(route)

    def lookup(self, host: str, path: str) -> Route | None:
        """The route for a normalized host name (lower case, no port) and path. A host whose
        routes do not cover the path falls through to wildcards, then host-less routes."""
        if self._hosts:
            group = self._hosts.get(host)
            if group is not None and (route := group.find(path)) is not None:
                return route
        if self._wildcards:
            dot = host.find(".", 1)
            while dot > 0:  # most specific suffix first: .a.example.com, then .example.com
                group = self._wildcards.get(host[dot:])
                if group is not None and (route := group.find(path)) is not None:
                    return route
                dot = host.find(".", dot + 1)
        return self._any.find(path)
