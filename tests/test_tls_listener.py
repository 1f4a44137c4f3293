"""TLS on the proxy's own listener, over real sockets: a browser-like client trusting the
test CA signs in with the mock Entra ID over https, a WebSocket runs over TLS to the echo
upstream, old protocols and ciphers are refused, and renewed certificate files are picked
up by new connections without failing a request (SIGHUP and workers:
tests/flows/test_tls_process.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from proxy.app import SERVER_TLS, build_app
from proxy.config_load import from_dict
from proxy.mock_entra import DEFAULT_CLIENT_ID, MockEntra
from proxy.server_tls import ServerTls
from tests.conftest import ALICE, HTML, ProxyTestServer, base_config, deep_merge, free_port
from tests.support.server_pki import TestCa, served_serial, wait_for_serial


@dataclass
class TlsStack:
    url: str
    port: int
    ca: TestCa
    tls: ServerTls
    mock: MockEntra

    def browser(self, **kwargs: Any) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(ssl=self.ca.client_context(), **kwargs))


TlsFactory = Callable[..., Awaitable[TlsStack]]


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    return TestCa(tmp_path)


@pytest.fixture
async def make_tls_stack(ca: TestCa, mock_server: tuple[MockEntra, str],
                         upstream_url: str) -> AsyncIterator[TlsFactory]:
    mock, idp = mock_server
    servers: list[ProxyTestServer] = []

    async def factory(extra: dict[str, Any] | None = None) -> TlsStack:
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        # As a real tenant: an https redirect URI is registered with its exact port.
        mock.clients[DEFAULT_CLIENT_ID].redirect_uris.append(f"{url}/callback/azuread")
        config = from_dict(deep_merge(base_config(port, idp, upstream_url), deep_merge({
            "server": {"public_url": url, "tls_cert_file": str(ca.cert_file),
                       "tls_key_file": str(ca.key_file)},
            "session": {"secure": True}}, extra or {})))
        app = build_app(config)
        server = ProxyTestServer(app, host="127.0.0.1", port=port)
        await server.start_server(ssl=app[SERVER_TLS].listener)
        servers.append(server)
        return TlsStack(url, port, ca, app[SERVER_TLS], mock)

    ca.issue()
    yield factory
    for server in servers:
        await server.close()


async def test_browser_signs_in_over_https_with_secure_cookies_and_a_websocket(
        make_tls_stack: TlsFactory) -> None:
    stack = await make_tls_stack()
    stack.mock.auto_user = ALICE
    async with stack.browser() as browser:
        async with browser.get(stack.url + "/hello", headers=HTML) as resp:
            body = await resp.json()
            assert resp.status == 200
            assert resp.url.scheme == "https"
        assert body["headers"]["X-Forwarded-User"] == [ALICE]
        assert body["headers"]["X-Forwarded-Proto"] == ["https"]
        # The session cookie came over TLS, and is Secure (sent over https only).
        cookies = {c.key: c for c in browser.cookie_jar}
        assert cookies["azp_session"]["secure"] is True
        async with browser.ws_connect(stack.url.replace("https", "wss") + "/ws") as ws:
            await ws.send_str("over tls")
            assert (await ws.receive_str()) == "echo:over tls"
            transport = ws._response.connection and ws._response.connection.transport
            assert transport is not None
            assert transport.get_extra_info("ssl_object").version() == "TLSv1.3"


async def test_protocol_and_cipher_floor(make_tls_stack: TlsFactory) -> None:
    stack = await make_tls_stack()
    ok = stack.ca.client_context()
    _, writer = await asyncio.open_connection("127.0.0.1", stack.port, ssl=ok)
    tls = writer.get_extra_info("ssl_object")
    assert (tls.version(), tls.selected_alpn_protocol()) == ("TLSv1.3", None)
    writer.close()
    # TLS 1.2 with a modern AEAD suite: accepted.
    modern = stack.ca.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    modern.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    modern.set_alpn_protocols(["h2", "http/1.1"])
    _, writer = await asyncio.open_connection("127.0.0.1", stack.port, ssl=modern)
    tls = writer.get_extra_info("ssl_object")
    assert (tls.version(), tls.selected_alpn_protocol()) == ("TLSv1.2", "http/1.1")
    writer.close()
    # TLS 1.2 with a CBC suite (Python's default server list accepts it): refused.
    cbc = stack.ca.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA256")
    await _refused(stack.port, cbc)
    # TLS 1.1, from a client willing to speak it at OpenSSL's lowest security level (it
    # does connect to a server allowing TLS 1.1 and its ciphers): refused.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1_1 itself
        old = stack.ca.client_context(minimum_version=ssl.TLSVersion.TLSv1,
                                      maximum_version=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("ALL:@SECLEVEL=0")
    await _refused(stack.port, old)


async def _refused(port: int, context: ssl.SSLContext) -> None:
    """The handshake fails: an alert, or (the server aborting its side at once) a reset."""
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection("127.0.0.1", port, ssl=context)


async def test_changed_files_reach_new_connections_and_a_bad_pair_is_refused(
        make_tls_stack: TlsFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    stack = await make_tls_stack({"server": {"tls_watch_interval": "100ms"}})
    ca, client = stack.ca, stack.ca.client_context()
    first = await served_serial(stack.port, client)
    # A renewal caught half-way: the new certificate is in place, its key not yet, so the
    # files hold a key that does not belong to the certificate. Each file is replaced
    # atomically (rename), so the watcher sees exactly this one state.
    staged = tmp_path / "staged"
    staged.mkdir()
    second = ca.issue(staged / "tls.crt", staged / "tls.key")
    os.replace(staged / "tls.crt", ca.cert_file)
    with caplog.at_level(logging.INFO, logger="proxy"):
        for _ in range(200):
            if any("cannot be used" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        refusals = [r for r in caplog.records if "cannot be used" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
        assert "does not belong to the certificate" in refusals[0].getMessage()
        assert await served_serial(stack.port, client) == first  # kept: fail safe
        os.replace(staged / "tls.key", ca.key_file)  # the renewal completes
        await wait_for_serial(stack.port, client, second)
    assert any("certificate reloaded" in r.getMessage() and f"{second:x}" in r.getMessage()
               for r in caplog.records)


async def test_renewal_under_load_fails_no_request(make_tls_stack: TlsFactory) -> None:
    stack = await make_tls_stack({"server": {"tls_watch_interval": "100ms"}})
    ca = stack.ca
    first = await served_serial(stack.port, ca.client_context())
    failures: list[BaseException] = []
    served: dict[str, set[int]] = {"new": set(), "kept": set()}
    done = asyncio.Event()

    async def load(new_connections: bool) -> None:
        # A handshake per request, or one connection kept alive through the renewal.
        kind = "new" if new_connections else "kept"
        context = ca.client_context()
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while not done.is_set():
            try:
                if connection is None:
                    connection = await asyncio.open_connection(
                        "127.0.0.1", stack.port, ssl=context)
                reader, writer = connection
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 "), head[:40]
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                served[kind].add(x509.load_der_x509_certificate(der).serial_number)
                if new_connections:
                    writer.close()
                    connection = None
            except Exception as exc:  # any failure at all is what this test counts
                failures.append(exc)
                connection = None
        if connection is not None:
            connection[1].close()

    workers = [asyncio.create_task(load(i < 4)) for i in range(5)]
    try:
        await _until(lambda: bool(failures) or {first} <= served["new"] & served["kept"])
        second = ca.issue()  # rewritten in place, as an operator's copy would
        await _until(lambda: bool(failures) or second in served["new"])
    finally:
        done.set()
    await asyncio.gather(*workers)
    assert failures == []
    assert served["kept"] == {first}  # the open connection kept its certificate
    assert served["new"] == {first, second}


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met within 30 s")
