"""No secret ever reaches a log line (SPEC §5 "Logs", "Errors").

A whole session — sign-in, requests, a token refresh, IdP errors, a failed token validation,
a refresh Entra rejects, sign-out — runs twice: against the proxy in this process with every
logger captured at DEBUG, and against `python -m proxy run` with its stderr captured. Every
token, code, PKCE verifier, cookie value and secret seen on the way is then searched for in
the logs, whole and by prefix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.app import build_app
from proxy.config_load import from_dict
from proxy.logs import JsonFormatter, TextFormatter
from proxy.mock_entra import DEFAULT_CLIENT_ID, MockEntra, create_app
from tests import echo_upstream
from tests.attacks.harness import raw_exchange
from tests.conftest import ALICE, HTML, base_config, deep_merge, free_port, wait_ready
from tests.support.proxy_toml import to_toml

BOB = "bob@contoso.example"
ROOT = Path(__file__).resolve().parents[2]
EXTRA: dict[str, Any] = {
    "server": {"log_level": "debug"},
    "session": {"store": "memory"},
    "identity": {"pass_access_token": True, "pass_id_token": True, "easy_auth": True,
                 "easy_auth_tokens": True},
    "azure": {"federated_logout": True},
}


@dataclass
class World:
    """The mock Entra ID and an upstream, both silent (no access log of their own)."""

    mock: MockEntra
    idp: str
    upstream: str
    client_secret: str
    session_secret: str


@pytest.fixture
async def world() -> AsyncIterator[World]:
    mock = MockEntra()
    client_secret = "cs~" + secrets.token_urlsafe(30)
    client = mock.clients[DEFAULT_CLIENT_ID]
    mock.clients[DEFAULT_CLIENT_ID] = dataclasses.replace(client, client_secret=client_secret)
    idp = TestServer(create_app(mock), host="127.0.0.1")
    upstream = TestServer(echo_upstream.create_app(), host="127.0.0.1")
    await idp.start_server(access_log=None)
    await upstream.start_server(access_log=None)
    yield World(mock, str(idp.make_url("")).rstrip("/"), str(upstream.make_url("")).rstrip("/"),
                client_secret, secrets.token_urlsafe(32))
    await upstream.close()
    await idp.close()


def proxy_config(world: World, port: int) -> dict[str, Any]:
    config = deep_merge(base_config(port, world.idp, world.upstream), EXTRA)
    config["azure"]["client_secret"] = world.client_secret
    config["session"]["secret"] = world.session_secret
    return config


@dataclass
class Seen:
    """Every secret value the session produced, by kind."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, kind: str, value: str | None) -> None:
        if value:
            self.values.setdefault(kind, set()).add(value)

    def needles(self) -> list[tuple[str, str]]:
        """(what, text) pairs to search the logs for: each value and its telling prefixes."""
        out = []
        for kind, values in self.values.items():
            for value in values:
                out.append((f"{kind} (whole)", value))
                parts = value.split(".")
                if value.startswith("eyJ") and len(parts) == 3:  # a JWT
                    out.append((f"{kind} (first 20)", value[:20]))
                    out += [(f"{kind} (segment {i} first 20)", p[:20])
                            for i, p in enumerate(parts[1:], 1) if len(p) >= 20]
                elif len(value) >= 24:
                    out += [(f"{kind} (first 20)", value[:20]), (f"{kind} (last 20)",
                                                                 value[-20:])]
        return out


def leaks(log: str, seen: Seen) -> list[str]:
    return sorted({what for what, text in seen.needles() if text in log})


async def step(browser: aiohttp.ClientSession, url: str, seen: Seen,
               headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    """One request without following redirects; every cookie it sets is remembered."""
    async with browser.get(url, headers=headers or HTML, allow_redirects=False) as resp:
        await resp.read()
    for name, morsel in resp.cookies.items():
        kind = "login-state cookie" if "_login_" in name else "session cookie"
        seen.add(kind, morsel.value)
    return resp


async def sign_in(proxy: str, world: World, browser: aiohttp.ClientSession, seen: Seen,
                  user: str = ALICE, path: str = "/app?x=1") -> aiohttp.ClientResponse:
    """The code flow one hop at a time, keeping the code and login cookie it passes."""
    world.mock.auto_user = user
    start = await step(browser, proxy + path, seen)
    assert start.status == 302, start.status
    at_idp = await step(browser, start.headers["Location"], seen)
    callback = at_idp.headers["Location"]
    seen.add("authorization code", parse_qs(urlsplit(callback).query).get("code", [""])[0])
    return await step(browser, callback, seen)


async def full_session(proxy: str, world: World) -> Seen:
    seen = Seen()
    seen.add("client secret", world.client_secret)
    seen.add("session secret", world.session_secret)
    mock, faults = world.mock, world.mock.faults
    mock.access_token_lifetime = 60  # inside the 5 min refresh window: the next request refreshes
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as alice:
        done = await sign_in(proxy, world, alice, seen)
        assert done.status == 302 and done.headers["Location"] == "/app?x=1"
        for path in ("/app?x=1", "/api/items", "/.auth/me", "/oauth2/userinfo", "/oauth2/auth"):
            resp = await step(alice, proxy + path, seen, headers={"Accept": "application/json"})
            assert resp.status in (200, 202), (path, resp.status)
        assert [r["grant_type"] for r in mock.token_requests].count("refresh_token") >= 1

        for fault in ("authorize_error", "token_error", "bad_signature", "nonce"):
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
                if fault == "authorize_error":
                    faults.authorize_error = ("access_denied", "AADSTS50105: not assigned.")
                elif fault == "token_error":
                    faults.token_error = (400, {"error": "invalid_grant", "error_description":
                                                "AADSTS54005: code already redeemed."})
                elif fault == "bad_signature":
                    faults.sign = "bad_signature"
                else:
                    faults.id_token_claims = {"nonce": "012345678"}
                failed = await sign_in(proxy, world, other, seen)
                assert failed.status in (401, 403, 502), (fault, failed.status)
                world.mock.faults = type(faults)()
                faults = world.mock.faults

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as bob:
            assert (await sign_in(proxy, world, bob, seen, BOB)).status == 302
            faults.token_error = (400, {"error": "invalid_grant",
                                        "error_description": "AADSTS700082: expired."})
            ended = await step(bob, proxy + "/api", seen, headers={"Accept": "application/json"})
            assert ended.status == 401  # the refresh Entra rejected ended the session
            world.mock.faults = type(faults)()

        out = await step(alice, proxy + "/oauth2/sign_out", seen)
        assert out.status == 302
        resp = await step(alice, proxy + "/api", seen, headers={"Accept": "application/json"})
        assert resp.status == 401

    for issued in mock.issued:
        for kind in ("access_token", "refresh_token", "id_token"):
            seen.add(kind.replace("_", " "), issued.get(kind))
    for request in mock.token_requests:
        seen.add("authorization code", request.get("code"))
        seen.add("PKCE verifier", request.get("code_verifier"))
        seen.add("refresh token", request.get("refresh_token"))
    for value in list(seen.values.get("session cookie", ())):
        payload = value.split(".")[0]
        seen.add("session id", json.loads(_b64decode(payload)))
    assert {"access token", "refresh token", "id token", "authorization code", "PKCE verifier",
            "session cookie", "session id", "login-state cookie"} <= set(seen.values)
    return seen


def _b64decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def formatted(records: list[logging.LogRecord]) -> str:
    """Each record as both log formats write it: every field of an event (host, user agent,
    client, path, ...) is searched, and JSON (unescaped values) as well as text."""
    text, as_json = TextFormatter(), JsonFormatter()
    return "\n".join(f.format(r) for r in records for f in (text, as_json))


async def test_no_secret_in_any_log_line_in_process(world: World,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    server = TestServer(build_app(from_dict(proxy_config(world, port))), host="127.0.0.1",
                        port=port)
    await server.start_server(access_log=None)  # as `azure-auth-proxy run` serves it
    try:
        seen = await full_session(f"http://127.0.0.1:{port}", world)
    finally:
        await server.close()
    log = formatted(caplog.records)
    for event in ("login completed", "tokens refreshed", "refresh rejected",  # captured
                  "idp_error=access_denied", "path=/callback/azuread status=401",
                  "path=/oauth2/sign_out status=302"):
        assert event in log, event
    assert leaks(log, seen) == []


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_in_the_stderr_of_the_proxy_process(world: World, tmp_path: Path,
                                                            log_format: str) -> None:
    port = free_port()
    config = proxy_config(world, port)
    config["server"]["log_format"] = log_format
    (tmp_path / "proxy.toml").write_text(to_toml(config))
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c",
                                 str(tmp_path / "proxy.toml")], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=sink)
    try:
        await wait_ready(f"http://127.0.0.1:{port}")
        seen = await full_session(f"http://127.0.0.1:{port}", world)
    finally:
        proc.terminate()
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
    log = stderr.read_text()
    if log_format == "json":
        assert all(json.loads(line) for line in log.splitlines())
        log += "\n" + "\n".join(TextFormatter().format(logging.makeLogRecord({
            "msg": entry.pop("event"), "fields": entry})) for entry in map(
                json.loads, log.splitlines()))  # both spellings: "a b" and a\u0020b
    for event in ("login completed", "tokens refreshed", "refresh rejected",
                  "idp_error=access_denied", "path=/callback/azuread status=401",
                  "path=/oauth2/sign_out status=302"):
        assert event in log, event
    assert leaks(log, seen) == []


async def test_an_oversized_cookie_header_does_not_log_the_session_cookie(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    # A browser with too many cookies for the domain sends a Cookie header over the limit;
    # the 400 must not log the start of that header, which is the session cookie.
    caplog.set_level(logging.DEBUG)
    port = free_port()
    server = TestServer(build_app(from_dict(proxy_config(world, port))), host="127.0.0.1",
                        port=port)
    await server.start_server(access_log=None)
    proxy = f"http://127.0.0.1:{port}"
    seen = Seen()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as alice:
            assert (await sign_in(proxy, world, alice, seen)).status == 302
        cookie = next(iter(seen.values["session cookie"]))
        request = (f"GET /app HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: azp_session={cookie}; "
                   f"tracking={'x' * 50_000}\r\nConnection: close\r\n\r\n").encode()
        exchange = await raw_exchange(port, request)
    finally:
        await server.close()
    assert exchange.statuses in ([400], [431])
    assert leaks(formatted(caplog.records), seen) == []
