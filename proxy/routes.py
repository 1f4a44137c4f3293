"""The route table: host (exact or *.domain), then longest path prefix; public-path regexes."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import unquote

from yarl import URL

from .authorize import Policy
from .config import AccessPolicyConfig, UpstreamConfig

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
    index: int
    path: str
    host: str
    upstream: URL
    public: tuple[re.Pattern[str], ...]
    preserve_host: bool
    strip_prefix: bool
    timeout: float
    policy: Policy
    audience: str  # the `aud` of identity assertions sent on this route (route_audience)
    base: str  # the upstream URL without a trailing slash, for joining raw paths
    origin: tuple[str, str, int]  # (scheme, host, port): the upstream client's pool key
    prefix: str  # the upstream URL's own path, without a trailing slash ("" for none)
    name: str  # host + path: the route's label in logs and metrics
    under: str  # the path without a trailing slash ("" for "/"): what matches_path tests

    def matches_path(self, path: str) -> bool:
        under = self.under
        return not under or path == under or path.startswith(under + "/")

    def matches_host(self, host: str) -> bool:
        if not self.host:
            return True
        if self.host.startswith("*."):
            suffix = self.host[1:]
            return host.endswith(suffix) and len(host) > len(suffix)
        return host == self.host

    def is_public(self, raw_path: str) -> bool:
        if not self.public or not is_plain_path(raw_path):
            return False
        path = unquote(raw_path.split("?", 1)[0])
        return any(p.search(path) for p in self.public)

    def upstream_path(self, raw_path: str) -> str:
        """Path (and query) to request upstream; raw unless the prefix is stripped."""
        if not self.strip_prefix or self.path == "/":
            return raw_path
        path, sep, query = raw_path.partition("?")
        rest = normalize_path(path)[len(self.path.rstrip("/")):] or "/"
        encoded = URL.build(path=rest).raw_path
        return encoded + (sep + query if sep else "")

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
    return (url.scheme, url.host or "", url.port or (443 if url.scheme == "https" else 80))


class RouteTable:
    """Compiled once at startup; `match` is the per-request lookup."""

    def __init__(self, upstreams: tuple[UpstreamConfig, ...], default: AccessPolicyConfig) -> None:
        self.routes = tuple(
            Route(
                index=i,
                path=u.path,
                host=u.host.lower(),
                upstream=URL(u.url),
                public=tuple(re.compile(p) for p in u.public),
                preserve_host=u.preserve_host,
                strip_prefix=u.strip_prefix,
                timeout=u.timeout,
                policy=Policy.from_config(u.access if u.access is not None else default),
                audience=route_audience(u),
                base=u.url.rstrip("/"),
                origin=_origin(URL(u.url)),
                prefix=URL(u.url).raw_path.rstrip("/"),
                name=f"{u.host.lower()}{u.path}" if u.host else u.path,
                under=u.path.rstrip("/"),
            )
            for i, u in enumerate(upstreams)
        )
        # Exact hosts first, then wildcard hosts, then host-less; longest prefix within each.
        self._ordered = sorted(
            self.routes,
            key=lambda r: (0 if r.host and "*" not in r.host else 1 if r.host else 2,
                           -len(r.path.rstrip("/"))),
        )

    def match(self, host: str, path: str) -> Route | None:
        host = host.lower().rsplit(":", 1)[0] if not host.startswith("[") else host.lower()
        for route in self._ordered:
            if route.matches_host(host) and route.matches_path(path):
                return route
        return None
