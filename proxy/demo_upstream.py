"""The demo's protected app: shows the identity headers it received; /ws echoes WebSockets."""

from __future__ import annotations

import html

from aiohttp import WSMsgType, web

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Demo app behind azure-auth-proxy</title>
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:3rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
</style></head><body><main>
<h1>Hello, {name}</h1>
<p>This page is served by a demo app that has no login of its own. azure-auth-proxy signed
you in with (mock) Microsoft Entra ID and added these headers to your request:</p>
<table><caption>Headers added by the proxy</caption>
<thead><tr><th scope="col">Header</th><th scope="col">Value</th></tr></thead>
<tbody>{rows}</tbody></table>
<p>WebSocket through the proxy: <button id="ws" type="button">Send "ping"</button>
<output id="wsout" for="ws" aria-label="WebSocket reply" aria-live="polite"></output></p>
<p><a href="/oauth2/userinfo">/oauth2/userinfo</a> &middot;
<a href="/oauth2/sign_out">Sign out</a></p>
<script>
document.getElementById("ws").onclick = () => {{
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/ws");
  ws.onopen = () => ws.send("ping");
  ws.onmessage = (e) => {{
    document.getElementById("wsout").textContent = "echo: " + e.data;
    ws.close();
  }};
}};
</script></main></body></html>"""


async def index(request: web.Request) -> web.Response:
    shown = sorted((k, v) for k, v in request.headers.items()
                   if k.lower().startswith(("x-forwarded-", "x-request-id")))
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                   for k, v in shown)
    name = request.headers.get("X-Forwarded-Name") or "stranger"
    return web.Response(text=_PAGE.format(name=html.escape(name), rows=rows),
                        content_type="text/html")


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ws", echo)
    app.router.add_get("/{tail:.*}", index)
    return app
