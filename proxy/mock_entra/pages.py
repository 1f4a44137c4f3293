"""The mock's HTML: sign-in picker, error page, signed-out page, form_post, index.

Everything echoed from a request goes through `esc`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

from aiohttp import web

from .errors import EntraError, error_fields
from .users import MockUser

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f3f2f1;color:#1b1b1b}
main{max-width:32rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:4px;
box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:1.5rem;margin-top:0}
ul.users{list-style:none;padding:0}
ul.users li{margin:.5rem 0}
button{width:100%;text-align:left;padding:.75rem 1rem;font:inherit;border:1px solid #8a8886;
background:#fff;border-radius:2px;cursor:pointer}
button:hover,button:focus-visible{background:#edebe9;outline:2px solid #0067b8}
.detail{display:block;color:#505050;font-size:.9em}
.error{color:#a4262c}
pre{white-space:pre-wrap;background:#f3f2f1;padding:.75rem}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def html_page(title: str, body: str, *, status: int = 200) -> web.Response:
    document = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
    return web.Response(
        text=document,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def _hidden_fields(params: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'
        for name, value in params.items()
    )


def sign_in_page(
    action: str,
    params: Mapping[str, str],
    users: Iterable[MockUser],
    *,
    tenant_label: str,
    notice: str | None = None,
) -> web.Response:
    """One-click account picker; POSTs the original authorize parameters plus `user`."""
    items = "".join(
        f'<li><button type="submit" name="user" value="{esc(user.username)}">'
        f"{esc(user.name)}<span class=detail>{esc(user.username)}</span></button></li>"
        for user in users
    )
    body = (
        "<h1>Pick an account</h1>"
        f"<p>Mock Microsoft Entra ID sign-in for tenant <code>{esc(tenant_label)}</code>."
        " No password: this is a test identity provider.</p>"
        + (f'<p class="error" role="alert">{esc(notice)}</p>' if notice else "")
        + f'<form method="post" action="{esc(action)}">{_hidden_fields(params)}'
        f'<ul class="users" aria-label="Accounts">{items or "<li>No users in this tenant.</li>"}'
        "</ul></form>"
    )
    return html_page("Sign in to your account", body)


def error_page(err: EntraError, base: str, now: float) -> web.Response:
    """Entra's own error page: shown instead of redirecting to an untrusted address."""
    fields = error_fields(err, base, now)
    body = (
        "<h1>Sorry, but we're having trouble signing you in.</h1>"
        f'<p class="error" role="alert">AADSTS{err.code}: {esc(err.message)}</p>'
        f"<pre>{esc(fields['error_description'])}</pre>"
    )
    return html_page("Sign in error", body, status=err.status)


def signed_out_page() -> web.Response:
    body = (
        "<h1>You signed out of your account</h1>"
        "<p>It's a good idea to close all browser windows.</p>"
    )
    return html_page("Signed out", body)


def form_post_page(action: str, params: Mapping[str, str]) -> web.Response:
    """`response_mode=form_post`: an auto-submitting form to the redirect URI."""
    body = (
        f'<form method="post" action="{esc(action)}">{_hidden_fields(params)}'
        "<noscript><p>Script is disabled. Press Continue.</p></noscript>"
        "<button type=submit>Continue</button></form>"
        "<script>document.forms[0].submit()</script>"
    )
    return html_page("Working...", body)


def index_page(base: str, tenants: Mapping[str, str], users: Iterable[MockUser]) -> web.Response:
    """`tenants` maps a tenant segment to a label."""
    tenant_items = "".join(
        f'<li><a href="{esc(base)}/{esc(segment)}/v2.0/.well-known/openid-configuration">'
        f"<code>{esc(segment)}</code></a> {esc(label)}</li>"
        for segment, label in tenants.items()
    )
    user_items = "".join(
        f"<li>{esc(u.name)} <code>{esc(u.username)}</code> tenant <code>{esc(u.tid)}</code>,"
        f" {len(u.groups)} groups, roles {esc(', '.join(u.roles) or '-')}</li>"
        for u in users
    )
    body = (
        "<h1>Mock Microsoft Entra ID</h1>"
        "<p>A local stand-in for tests and the demo. Never expose it beyond loopback.</p>"
        f"<h2>Tenants (discovery documents)</h2><ul>{tenant_items}</ul>"
        f"<h2>Users</h2><ul>{user_items}</ul>"
    )
    return html_page("Mock Entra ID", body)
