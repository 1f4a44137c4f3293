"""`azure-auth-proxy demo`: mock Entra ID + a demo app + the proxy, all on loopback."""

from __future__ import annotations

import asyncio
import secrets
import socket

from aiohttp import web

from . import demo_upstream
from .app import build_app
from .config import Config
from .config_load import from_dict
from .mock_entra import DEFAULT_TENANT_ID, MockEntra, run_mock
from .runner import ProxyRunner

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def demo_config(port: int, idp_port: int, upstream_port: int) -> Config:
    mock = MockEntra()
    client = next(iter(mock.clients.values()))
    return from_dict({
        "server": {"listen": f"{LOOPBACK}:{port}", "public_url": f"http://{LOOPBACK}:{port}"},
        "azure": {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "tenant_id": "organizations",
            "allowed_tenants": [DEFAULT_TENANT_ID],
            "cloud_instance": f"http://{LOOPBACK}:{idp_port}/",
        },
        "session": {"secret": secrets.token_urlsafe(32), "secure": False},
        "upstreams": [{"path": "/", "url": f"http://{LOOPBACK}:{upstream_port}"}],
    })


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = ProxyRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    return runner


async def run_demo(port: int = 4180) -> None:
    idp_port, upstream_port = free_port(), free_port()
    mock = MockEntra()
    runners = [await run_mock(mock, LOOPBACK, idp_port),
               await _serve(demo_upstream.create_app(), upstream_port),
               await _serve(build_app(demo_config(port, idp_port, upstream_port)), port)]
    users = "\n".join(f"    {u.username:<32} {u.name}" for u in mock.users.values())
    print(
        f"\nazure-auth-proxy demo is running.\n\n  Open  http://{LOOPBACK}:{port}/\n\n"
        f"  Mock Entra ID: http://{LOOPBACK}:{idp_port}/   demo app: "
        f"http://{LOOPBACK}:{upstream_port}/ (unprotected, loopback only)\n"
        f"  Test users (pick one on the mock sign-in page; only the tenant "
        f"{DEFAULT_TENANT_ID} is allowed):\n{users}\n\n  Press Ctrl+C to stop.\n",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
