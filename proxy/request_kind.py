"""What kind of client sent a request: a browser loading a page, or a script (XHR, API).

The answer decides between a redirect to sign in and a 401, and between an HTML page and
JSON for an error; it is about the request, not about rendering, so it lives apart from
pages.py (which imports it)."""

from __future__ import annotations

from aiohttp import web


def wants_html(request: web.BaseRequest) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def is_navigation(request: web.BaseRequest) -> bool:
    """A browser loading a page (redirect it to sign in) as opposed to XHR/fetch/API calls."""
    if request.method not in ("GET", "HEAD") or not wants_html(request):
        return False
    if request.headers.get("X-Requested-With", "").lower() == "xmlhttprequest":
        return False
    return request.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"
