"""Header hygiene: strip what a client must not set, drop hop-by-hop, add X-Forwarded-*."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

from multidict import CIMultiDict

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "proxy-connection",
})
# Headers only the proxy may set, whatever features are on (SPEC §5 "Proxy-owned headers").
OWNED_PREFIXES = ("x-ms-client-principal", "x-ms-token-", "x-auth-request-")
ALWAYS_OWNED = frozenset({
    "x-forwarded-access-token", "x-forwarded-id-token", "x-auth-assertion",
    "x-forwarded-user", "x-forwarded-email", "x-forwarded-name", "x-forwarded-groups",
    "x-forwarded-roles", "x-forwarded-object-id", "x-forwarded-tenant-id",
    "x-forwarded-preferred-username", "x-forwarded-principal-type",
})
# "user" or "app" on every authenticated request: an app (app-only bearer token, where a
# route allows apps) is never passed on as if it were a person.
PRINCIPAL_TYPE = "X-Forwarded-Principal-Type"
# "<identity header>-Overflow: true": the proxy left that header out, as too long for
# upstreams' limits (header_budget.py). Owned like the header it marks.
OVERFLOW_SUFFIX = "-Overflow"
# Host is set for the upstream by the proxy; so is the body's framing (Content-Length here,
# Transfer-Encoding being hop-by-hop), from the length the proxy read the body by.
_NEVER_FORWARDED = HOP_BY_HOP | {"host", "content-length"}
_NOT_PASSED_BACK = HOP_BY_HOP | {"content-length"}  # aiohttp frames the body it sends
# Set by the proxy from what it saw; from untrusted peers the client's copies are lies.
FORWARDING = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                        "forwarded", "x-real-ip", "x-request-id"})
# What front proxies say about the original request, which frameworks act on: IIS URL
# Rewrite serves X-Original-URL instead of the path the policy checked; Spring, Werkzeug's
# ProxyFix and ASP.NET build links and redirects from Prefix/Port/Server; forward-auth
# peers send Uri/Method. Believed (passed on) only from trusted_proxies.
FRONT_PROXY = frozenset({
    "x-original-url", "x-original-uri", "x-rewrite-url", "x-original-host",
    "x-original-method", "x-forwarded-prefix", "x-forwarded-port", "x-forwarded-server",
    "x-forwarded-uri", "x-forwarded-method", "x-forwarded-scheme", "x-forwarded-protocol",
    "x-forwarded-ssl", "x-url-scheme", "front-end-https", "x-client-ip", "true-client-ip",
    "x-cluster-client-ip", "cf-connecting-ip", "fastly-client-ip", "x-envoy-external-address",
})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def canonical(name: str) -> str:
    """Header name as upstream frameworks see it: CGI/WSGI map '_' and '-' to the same key."""
    return name.lower().replace("_", "-")


def owned_names(identity_headers: Iterable[str], assertion_header: str = "") -> frozenset[str]:
    names = {canonical(n) for n in identity_headers} | ALWAYS_OWNED
    if assertion_header:
        names.add(canonical(assertion_header))
    return frozenset(names | {canonical(n + OVERFLOW_SUFFIX) for n in names})


def is_owned(name: str, owned: frozenset[str]) -> bool:
    key = canonical(name)
    return key in owned or key.startswith(OWNED_PREFIXES)


def peer_trusted(peer: str | None, trusted: tuple[Network, ...]) -> bool:
    if not peer or not trusted:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in trusted)


def strip_cookies(cookie_header: str, prefix: str) -> str:
    """Remove the proxy's own cookies (session, chunks, login state) from a Cookie header."""
    kept = []
    for part in cookie_header.split(";"):
        name = part.split("=", 1)[0].strip()
        if name and name != prefix and not name.startswith(prefix + "_"):
            kept.append(part.strip())
    return "; ".join(kept)


_CONTROL = {c: None for c in [*range(0x20), 0x7F]}


def own_cookies(headers: Mapping[str, str] | CIMultiDict[str], prefix: str) -> dict[str, str]:
    """Just the proxy's cookies from the Cookie header(s), without building a Morsel for
    every cookie the apps behind the proxy set (the hot path's own parse)."""
    found: dict[str, str] = {}
    for header in _all(headers, "cookie"):
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name.startswith(prefix) and name not in found:
                value = value.strip()
                if len(value) > 1 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                found[name] = value
    return found


def clean_value(value: str) -> str:
    """Header values from claims: no control characters, so nothing can inject a header."""
    return value if value.isprintable() else value.translate(_CONTROL)


# What upstream_headers does with a request header, decided once per spelling of its name.
_PASS, _DROP, _TRUSTED_ONLY, _COOKIE, _HOST, _PRIOR_XFF = range(6)


@functools.lru_cache(maxsize=2048)
def _request_decision(name: str, owned: frozenset[str]) -> tuple[int, str]:
    """(what to do, canonical name). Names repeat on every request, so this runs once per
    spelling (and per config: `owned`); the bound keeps junk names from growing it."""
    lowered = name.lower()
    key = lowered.replace("_", "-")
    if lowered == "host":
        return _HOST, key
    if lowered == "x-forwarded-for":
        return _PRIOR_XFF, key
    if key in _NEVER_FORWARDED or key in owned or key.startswith(OWNED_PREFIXES):
        return _DROP, key
    if key in FORWARDING:
        return (_DROP if key in ("x-forwarded-for", "x-request-id") else _TRUSTED_ONLY), key
    if key in FRONT_PROXY:
        return _TRUSTED_ONLY, key
    return (_COOKIE if key == "cookie" else _PASS), key


def upstream_headers(
    incoming: Mapping[str, str] | CIMultiDict[str],
    *,
    owned: frozenset[str],
    cookie_prefix: str,
    peer: str | None,
    peer_is_trusted: bool,
    scheme: str,
    request_id: str,
    forwarded_host: str | None = None,
) -> CIMultiDict[str]:
    """The request headers to send upstream, before identity headers are added.
    `forwarded_host`: the normalized Host (request_target.py), sent instead of the raw one."""
    connection = _all(incoming, "connection")
    listed = ({canonical(t.strip()) for v in connection for t in v.split(",")}
              if connection else ())
    kept: list[tuple[str, str]] = []
    host: str | None = None
    prior: list[str] = []
    for name, value in incoming.items():  # one pass; each name's fate is memoized
        action, key = _request_decision(name, owned)
        if action == _PASS:
            if key not in listed:
                kept.append((name, value))
        elif action == _COOKIE:
            if key not in listed and (value := strip_cookies(value, cookie_prefix)):
                kept.append((name, value))
        elif action == _HOST:
            if host is None:
                host = value
        elif action == _PRIOR_XFF:
            prior.append(value)
        elif action == _TRUSTED_ONLY and peer_is_trusted and key not in listed:
            kept.append((name, value))
    out: CIMultiDict[str] = CIMultiDict(kept)
    before = ", ".join(prior) if peer_is_trusted else ""
    out["X-Forwarded-For"] = f"{before}, {peer}" if before and peer else (peer or before)
    if "x-forwarded-proto" not in out:
        out["X-Forwarded-Proto"] = scheme
    if forwarded_host is not None:
        host = forwarded_host or None
    if "x-forwarded-host" not in out and host is not None:
        out["X-Forwarded-Host"] = host
    out["X-Request-Id"] = request_id
    return out


def response_headers(incoming: Mapping[str, str] | CIMultiDict[str],
                     cookie_prefix: str) -> list[tuple[str, str]]:
    """Upstream response headers minus hop-by-hop ones (and those its Connection names), as
    pairs: aiohttp's response copies them into its own multidict anyway. A Set-Cookie for
    one of the proxy's own cookies is dropped: one app must not fix or wipe the session
    (or a login in flight) that every app behind the proxy shares."""
    connection = _all(incoming, "connection")
    listed = ({canonical(t.strip()) for v in connection for t in v.split(",")}
              if connection else ())
    out: list[tuple[str, str]] = []
    for name, value in incoming.items():
        key = name.lower()
        if "_" in key:
            key = key.replace("_", "-")
        if key in _NOT_PASSED_BACK or key in listed:
            continue
        if key == "set-cookie" and is_own_cookie(value, cookie_prefix):
            continue
        out.append((name, value))
    return out


def is_own_cookie(set_cookie: str, prefix: str) -> bool:
    """Whether a Set-Cookie value names one of the proxy's cookies (any case, any spacing)."""
    pair = set_cookie.split(";", 1)[0]
    name = pair.split("=", 1)[0].strip().lower() if "=" in pair else pair.strip().lower()
    own = prefix.lower()
    return name == own or name.startswith(own + "_")


def _all(headers: Mapping[str, str] | CIMultiDict[str], name: str) -> list[str]:
    if isinstance(headers, CIMultiDict) or hasattr(headers, "getall"):
        return list(headers.getall(name, []))
    return [v for k, v in headers.items() if k.lower() == name]
