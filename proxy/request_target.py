"""Where a request goes: its Host and path, read so that no upstream can read them otherwise.

The route (and so the policy) is chosen on the host name (lower case, no trailing dot, port
ignored) and on the decoded, dot-resolved path. Upstreams read the same bytes in other ways:
Express mounts and Werkzeug's `<path:>` do not resolve `..`, IIS drops trailing dots and
spaces and reads `\\` as `/`, Tomcat drops `;params`, C code stops at NUL, URL parsers drop
tabs and newlines, some servers decode twice or fold full-width letters (NFKC). When any of
those readings would land on another route, the request is refused (400) instead of being
forwarded, raw, under the policy of a route its upstream does not think it is on. The path
itself is forwarded unchanged: an upstream that needs `%2F` or `;params` still gets them.
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import unquote

from .errors import BadRequest
from .routes import Route, RouteTable, normalize_path

# A path none of whose readings can differ: printable ASCII without %, \ or ;, no segment
# ending in "." (".", "..", "admin."), no empty segment. The common case: no further work.
_NOT_PLAIN = re.compile(r"[^\x21-\x7e]|[%\\;]|\.(?:/|$)|//")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# host[.][:port], ASCII only (IDNs arrive as punycode), no empty label
_NAME = re.compile(r"([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)\.?(?::([0-9]*))?")
_IPV6 = re.compile(r"\[([0-9a-f:.]+)\](?::([0-9]*))?")
_DEFAULT_PORT = {"http": 80, "https": 443}
_LONGEST_HOST = 260  # a 253-character name, a trailing dot and ":65535"


class AmbiguousRequest(BadRequest):
    """Malformed Host, or a path whose readings pick different routes."""


def resolve(routes: RouteTable, hosts: list[str], raw_path: str,
            scheme: str) -> tuple[Route | None, str]:
    """The one entry point: (the route, the normalized Host), or a 400. `hosts` are the
    request's Host header values; `scheme` the proxy's public one. The normalized Host
    (host plus a non-default port) is what X-Forwarded-Host and a preserved Host carry
    (Exchange.authority), never the client's spelling of it. A plain tuple: this runs on
    every request."""
    if len(hosts) > 1:
        raise AmbiguousRequest("The request carries more than one Host header.")
    value = hosts[0].strip() if hosts else ""  # an empty Host names no host, like none
    host, authority = normal_host(value, scheme) if value else ("", "")
    return route_for(routes, host, raw_path), authority


def normal_host(value: str, scheme: str) -> tuple[str, str]:
    """(host name, authority) of a Host value; a malformed one (a bad port, brackets around
    a name, `%`, `@`, a second colon, an empty label) is refused, never guessed at."""
    if len(value) > _LONGEST_HOST:  # never a valid host, and never kept in the memo
        raise AmbiguousRequest("The Host header is malformed.")
    parsed = _parse_host(value, scheme)
    if isinstance(parsed, str):
        raise AmbiguousRequest(parsed)
    return parsed


@functools.lru_cache(maxsize=1024)
def _parse_host(value: str, scheme: str) -> tuple[str, str] | str:
    """normal_host's answer, or why not. Host values repeat on every request, so this runs
    once per spelling; the bound keeps junk values from growing it."""
    lowered = value.strip().lower()
    match = _NAME.fullmatch(lowered) if lowered.isascii() else None
    if match is not None:
        name = match[1]
    else:
        match = _IPV6.fullmatch(lowered) if lowered.isascii() else None
        try:
            name = f"[{ipaddress.IPv6Address(match[1]).compressed}]" if match else ""
        except ValueError:
            name = ""
        if not name:
            return "The Host header is malformed."
    assert match is not None
    port = match[2]
    if not port:  # none, or "host:" (an empty port is the default one)
        return name, name
    number = int(port)
    if not 0 < number < 65536:
        return "The Host header's port is out of range."
    if number == _DEFAULT_PORT.get(scheme):
        return name, name
    return name, f"{name}:{number}"


def route_for(routes: RouteTable, host: str, raw_path: str) -> Route | None:
    """The route of the strict reading, if every lenient reading agrees with it."""
    path = raw_path.partition("?")[0]
    if path.startswith("/") and not _NOT_PLAIN.search(path):
        return routes.lookup(host, path)
    route = routes.lookup(host, normalize_path(path))
    for reading in readings(path):
        if routes.lookup(host, reading) is not route:
            raise AmbiguousRequest(
                "The path reads differently to different servers (encoded separators, dot "
                "segments, trailing dots, control characters): request it in plain form.")
    return route


def readings(path: str) -> Iterator[str]:
    """How lenient upstreams may read a path (without its query), besides normalize_path."""
    yield path if path.startswith("/") else "/" + path  # routed on the raw bytes
    decoded = unquote(path)
    yield from _decoded_readings(decoded)
    if "%" in decoded:  # decoded twice (%252e%252e is .. to some servers)
        yield from _decoded_readings(unquote(decoded))


def _decoded_readings(decoded: str) -> Iterator[str]:
    yield decoded if decoded.startswith("/") else "/" + decoded  # dots left unresolved
    lenient = _lenient(decoded)
    yield lenient
    yield _resolved(lenient)


def _lenient(decoded: str) -> str:
    text = unicodedata.normalize("NFKC", decoded).replace("\\", "/")
    text = _CONTROL.sub("", text.split("\x00", 1)[0])
    segments = []
    for segment in text.split("/"):
        segment = segment.split(";", 1)[0]
        if segment not in (".", ".."):
            segment = segment.rstrip(". ")  # Windows names drop trailing dots and spaces
        if segment:
            segments.append(segment)
    return "/" + "/".join(segments) + ("/" if text.endswith("/") and segments else "")


def _resolved(path: str) -> str:
    resolved = posixpath.normpath(path)
    return "/" + resolved.lstrip("/")
