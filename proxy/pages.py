"""The single place errors and notices become responses: an HTML page or JSON + request id."""

from __future__ import annotations

import html
import json

from aiohttp import web

from .errors import ProxyError, Unauthenticated
from .state import REQUEST_ID

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;"
    "color:#1b1b1b;line-height:1.5}h1{font-size:1.5rem}.rid{color:#666;font-size:.85rem}"
    "a.button{display:inline-block;padding:.5rem 1rem;border:1px solid #0a58ca;"
    "border-radius:4px;color:#0a58ca;text-decoration:none;margin-right:.5rem}"
)
NO_STORE = {"Cache-Control": "no-store"}


def wants_html(request: web.BaseRequest) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def is_navigation(request: web.BaseRequest) -> bool:
    """A browser loading a page (redirect it to sign in) as opposed to XHR/fetch/API calls."""
    if request.method not in ("GET", "HEAD") or not wants_html(request):
        return False
    if request.headers.get("X-Requested-With", "").lower() == "xmlhttprequest":
        return False
    return request.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"


def render(title: str, message: str, *, status: int = 200, request_id: str = "",
           links: tuple[tuple[str, str], ...] = ()) -> web.Response:
    actions = "".join(
        f'<a class="button" href="{html.escape(href)}">{html.escape(label)}</a>'
        for label, href in links)
    rid = f'<p class="rid">Request ID: {html.escape(request_id)}</p>' if request_id else ""
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body><main>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        f"<p>{actions}</p>{rid}</main></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html", headers=NO_STORE)


def error_response(request: web.BaseRequest, error: ProxyError) -> web.Response:
    request_id = str(request.get(REQUEST_ID, ""))
    # Browsers navigating are redirected before they could see a 401: whoever gets one is
    # a script, and scripts get JSON and a WWW-Authenticate challenge.
    if wants_html(request) and not isinstance(error, Unauthenticated):
        links: tuple[tuple[str, str], ...] = ()
        if error.status in (401, 403) or error.status >= 500:
            links = (("Try again", "/oauth2/start"), ("Sign out", "/oauth2/sign_out"))
        return render(error.title, error.public, status=error.status, request_id=request_id,
                      links=links)
    body = {"error": _code(error), "message": error.public, "request_id": request_id}
    headers = dict(NO_STORE)
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = error.challenge
    return web.Response(status=error.status, text=json.dumps(body),
                        content_type="application/json", headers=headers)


def _code(error: ProxyError) -> str:
    name = type(error).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
