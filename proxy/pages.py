"""The single place errors and notices become responses: an HTML page or JSON + request id.

Pages are plain server-rendered HTML with inline styles (no external assets), themable
through `[ui]` (title, logo, footer).
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote

from aiohttp import web

from .config import UiConfig
from .errors import AccessDenied, ProxyError, SignInRequired, Unauthenticated
from .request_kind import wants_html
from .state import REQUEST_ID, STATE

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;"
    "color:#1b1b1b;background:#fff;line-height:1.5}h1{font-size:1.5rem}"
    ".rid,footer{color:#595959;font-size:.85rem}header img{max-height:3rem}"
    "a.button{display:inline-block;padding:.5rem 1rem;border:1px solid #0a58ca;"
    "border-radius:4px;color:#0a58ca;text-decoration:none;margin:0 .5rem .5rem 0}"
    "a.button.primary{background:#0a58ca;color:#fff}"
    "a.button:focus{outline:3px solid #ffbf47;outline-offset:2px}"
)
NO_STORE = {"Cache-Control": "no-store"}
Links = tuple[tuple[str, str], ...]


def _ui(request: web.BaseRequest) -> UiConfig:
    cell = request.app.get(STATE) if isinstance(request, web.Request) else None
    return cell.current.config.ui if cell is not None else UiConfig()


def render(request: web.BaseRequest, title: str, message: str, *, status: int = 200,
           links: Links = (), headers: dict[str, str] | None = None) -> web.Response:
    ui = _ui(request)
    actions = "".join(
        f'<a class="button{" primary" if i == 0 else ""}" href="{html.escape(href)}">'
        f"{html.escape(label)}</a>" for i, (label, href) in enumerate(links))
    request_id = str(request.get(REQUEST_ID, ""))
    rid = f'<p class="rid">Request ID: {html.escape(request_id)}</p>' if request_id else ""
    logo = (f'<header><img src="{html.escape(ui.logo_url)}" alt="{html.escape(ui.title)}">'
            f"</header>" if ui.logo_url else "")
    footer = f"<footer><p>{html.escape(ui.footer)}</p></footer>" if ui.footer else ""
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)} · {html.escape(ui.title)}</title>"
        f"<style>{_STYLE}</style></head><body>{logo}<main>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        f"<p>{actions}</p>{rid}</main>{footer}</body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={**NO_STORE, **(headers or {})})


def sign_in_page(request: web.Request, target: str) -> web.Response:
    """The interstitial shown instead of a redirect when skip_provider_button = false."""
    start = "/oauth2/start?rd=" + quote(target, safe="")
    return render(request, "Sign in", "This application requires you to sign in with your "
                  "Microsoft work or school account.", status=401,
                  links=(("Sign in with Microsoft", start),),
                  headers={"WWW-Authenticate": Unauthenticated.challenge})


def _links(request: web.BaseRequest, error: ProxyError) -> Links:
    if isinstance(error, AccessDenied):
        # Where the user was going: never the callback (its spent code would land the next
        # account on a 400) nor another of the proxy's own endpoints.
        path = request.raw_path if isinstance(request, web.Request) else "/"
        back = error.context.get("return_to") or (
            "/" if path.startswith(("/callback/", "/oauth2/", "/.auth/")) else path)
        here = quote(back, safe="")
        return (("Sign out", "/oauth2/sign_out"),
                ("Switch account", f"/oauth2/start?prompt=select_account&rd={here}"))
    if error.status in (400, 401) or error.status >= 500:
        return (("Try again", "/oauth2/start"), ("Sign out", "/oauth2/sign_out"))
    return ()


def error_response(request: web.BaseRequest, error: ProxyError) -> web.Response:
    # Browsers navigating are redirected before they could see a 401: whoever gets one is
    # a script, and scripts get JSON and a WWW-Authenticate challenge.
    if wants_html(request) and not isinstance(error, Unauthenticated):
        return render(request, error.title, error.public, status=error.status,
                      links=_links(request, error))
    request_id = str(request.get(REQUEST_ID, ""))
    body = {"error": _code(error), "message": error.public, "request_id": request_id}
    headers = dict(NO_STORE)
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = error.challenge
    return web.Response(status=error.status, text=json.dumps(body),
                        content_type="application/json", headers=headers)


def _code(error: ProxyError) -> str:
    # "No session" is the documented "unauthenticated" to clients, whatever admission calls it.
    name = "Unauthenticated" if isinstance(error, SignInRequired) else type(error).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
