"""Redirect URI matching (reply-url rules, ENTRA.md §5) and replies to the app."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from aiohttp import web
from yarl import URL

from .errors import EntraError, redirect_fields
from .pages import form_post_page

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
RESPONSE_MODES: Final = frozenset({"query", "fragment", "form_post"})


def _parse(uri: str) -> URL | None:
    try:
        url = URL(uri)
    except ValueError:
        return None
    return url if url.absolute and url.scheme in ("http", "https") else None


def _same_origin(registered: URL, candidate: URL) -> bool:
    """Scheme, host and port equal; Entra ignores the port of http loopback URIs."""
    loopback = registered.scheme == "http" and registered.host in LOOPBACK_HOSTS
    return (
        registered.scheme == candidate.scheme
        and registered.host == candidate.host
        and (loopback or registered.port == candidate.port)
        and registered.raw_user == candidate.raw_user
        and registered.raw_password == candidate.raw_password
    )


def redirect_uri_matches(registered: str, candidate: str) -> bool:
    """Exact and case-sensitive; a path-less URI equals the same URI with `/`."""
    reg, cand = _parse(registered), _parse(candidate)
    if reg is None or cand is None:
        return False
    # yarl already turns an empty path into "/", which is the trailing-slash rule.
    return (
        _same_origin(reg, cand)
        and reg.raw_path == cand.raw_path
        and reg.raw_query_string == cand.raw_query_string
        and reg.raw_fragment == cand.raw_fragment
    )


def logout_redirect_allowed(registered: Iterable[str], candidate: str) -> bool:
    """Lenient: a registered redirect URI, or any URI on a registered URI's origin."""
    cand = _parse(candidate)
    if cand is None:
        return False
    for uri in registered:
        reg = _parse(uri)
        if reg is not None and _same_origin(reg, cand):
            return True
    return False


def found(location: str) -> web.Response:
    """A 302 returned, not raised: handlers stay plain functions of request to response."""
    return web.Response(status=302, headers={"Location": location})


@dataclass(frozen=True)
class Reply:
    """Where and how authorize answers the app (`response_mode`)."""

    redirect_uri: str
    response_mode: str
    state: str | None

    def code(self, code: str, session_state: str) -> web.Response:
        params = {"code": code}
        if self.state is not None:
            params["state"] = self.state
        params["session_state"] = session_state
        return self._send(params)

    def error(self, err: EntraError, base: str, now: float) -> web.Response:
        params = redirect_fields(err, base, now)
        if self.state is not None:
            params["state"] = self.state
        return self._send(params)

    def _send(self, params: dict[str, str]) -> web.Response:
        if self.response_mode == "form_post":
            return form_post_page(self.redirect_uri, params)
        url = URL(self.redirect_uri)
        if self.response_mode == "fragment":
            return found(f"{url.with_fragment(None)}#{urlencode(params)}")
        return found(str(url.extend_query(params)))
