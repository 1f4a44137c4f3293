"""https:// upstreams: the upstream client verifies the certificate chain and the name."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

from proxy.config import AccessPolicyConfig, UpstreamConfig
from proxy.errors import ConfigError
from proxy.routes import RouteTable
from proxy.upstream_client import BrokenAnswer, ConnectFailed, UpstreamPool
from proxy.upstream_tls import tls_context, warn_insecure
from tests.conftest import StackFactory

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
Key = ec.EllipticCurvePrivateKey


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key: Key, issuer: str, issuer_key: Key, *, ca: bool,
          san: x509.GeneralName | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class Pki:
    """A CA, and server certificates it (or a stranger) issues."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("test ca", self.key, "test ca", self.key, ca=True)
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(_pem(self.ca))

    def server_context(self, san: x509.GeneralName, *, stranger: bool = False) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_key = ec.generate_private_key(ec.SECP256R1()) if stranger else self.key
        cert = _cert("upstream", key, "test ca", issuer_key, ca=False, san=san)
        chain = self.directory / f"server-{id(key)}.pem"
        chain.write_bytes(_pem(cert) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain)
        return context


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pki:
    authority = Pki(tmp_path)
    # The client's default context trusts what OpenSSL's default paths name: point them at
    # this test CA instead of the system store.
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return authority


@pytest.fixture
async def serve_tls() -> AsyncIterator[Callable[[ssl.SSLContext], asyncio.Task[int]]]:
    servers: list[asyncio.Server] = []

    async def start(context: ssl.SSLContext) -> int:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(OK)
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def factory(context: ssl.SSLContext) -> asyncio.Task[int]:
        return asyncio.ensure_future(start(context))

    yield factory
    for server in servers:
        server.close()
        await server.wait_closed()


async def get(port: int, **tls: Any) -> bytes:
    """GET / from 127.0.0.1:port over TLS, through a pool of its own (`tls`: the request's
    tls= and server_name= options)."""
    pool = UpstreamPool()
    try:
        response = await pool.request("GET", ("https", "127.0.0.1", port), "/",
                                      CIMultiDict({"Host": "127.0.0.1"}), None, 2.0, **tls)
        try:
            return await response.read(2.0)
        finally:
            response.release()
    finally:
        await pool.close()


async def test_a_certificate_from_a_trusted_ca_for_the_right_name_is_accepted(
        pki: Pki, serve_tls: Callable[[ssl.SSLContext], asyncio.Task[int]]) -> None:
    port = await serve_tls(pki.server_context(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    assert await get(port) == b"ok"


async def test_a_certificate_from_an_unknown_ca_is_refused(
        pki: Pki, serve_tls: Callable[[ssl.SSLContext], asyncio.Task[int]]) -> None:
    context = pki.server_context(x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                 stranger=True)
    with pytest.raises(ConnectFailed) as caught:
        await get(await serve_tls(context))
    assert caught.value.kind == "unreachable"  # the proxy answers 502


async def test_a_certificate_for_another_name_is_refused(
        pki: Pki, serve_tls: Callable[[ssl.SSLContext], asyncio.Task[int]]) -> None:
    port = await serve_tls(pki.server_context(x509.DNSName("other.example")))
    with pytest.raises(ConnectFailed):
        await get(port)


# ------------------------------------------------------- per-upstream TLS (ca_file, mTLS, ...)

LOOPBACK = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))


def client_cert(pki: Pki, common: str = "the proxy") -> Path:
    """A client certificate (and its key, in one PEM file) issued by the test CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name("test ca"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .sign(pki.key, hashes.SHA256()))
    path = pki.directory / f"client-{common.replace(' ', '-')}.pem"
    path.write_bytes(_pem(cert) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


@pytest.fixture
def private_pki(tmp_path: Path) -> Pki:
    """A CA the system store does not know (no SSL_CERT_FILE pointing at it)."""
    return Pki(tmp_path)


async def get_with(port: int, upstream: UpstreamConfig) -> bytes:
    return await get(port, tls=tls_context(upstream, "upstreams[0]"),
                     server_name=upstream.server_name or None)


def https(**tls: Any) -> UpstreamConfig:
    return UpstreamConfig(url="https://127.0.0.1:1", **tls)


async def test_ca_file_trusts_a_private_ca_the_system_does_not(
        private_pki: Pki, serve_tls: Callable[[ssl.SSLContext], asyncio.Task[int]]) -> None:
    port = await serve_tls(private_pki.server_context(LOOPBACK))
    with pytest.raises(ConnectFailed):
        await get_with(port, https())  # the system store: unknown CA
    assert await get_with(port, https(ca_file=str(private_pki.ca_file))) == b"ok"


async def test_ca_file_still_refuses_a_wrong_name_or_another_ca(
        private_pki: Pki, serve_tls: Callable[[ssl.SSLContext], asyncio.Task[int]]) -> None:
    upstream = https(ca_file=str(private_pki.ca_file))
    wrong_name = await serve_tls(private_pki.server_context(x509.DNSName("other.example")))
    with pytest.raises(ConnectFailed):
        await get_with(wrong_name, upstream)
    stranger = await serve_tls(private_pki.server_context(LOOPBACK, stranger=True))
    with pytest.raises(ConnectFailed):
        await get_with(stranger, upstream)


async def test_server_name_is_the_name_checked(
        private_pki: Pki, serve_tls: Callable[[ssl.SSLContext], asyncio.Task[int]]) -> None:
    port = await serve_tls(private_pki.server_context(x509.DNSName("app.internal")))
    ca = str(private_pki.ca_file)
    assert await get_with(port, https(ca_file=ca, server_name="app.internal")) == b"ok"
    with pytest.raises(ConnectFailed):
        await get_with(port, https(ca_file=ca, server_name="other.internal"))


async def test_client_certificate_is_presented_for_mtls(
        private_pki: Pki, serve_tls: Callable[[ssl.SSLContext], asyncio.Task[int]]) -> None:
    server = private_pki.server_context(LOOPBACK)
    server.verify_mode = ssl.CERT_REQUIRED  # mTLS: no client certificate, no connection
    server.load_verify_locations(private_pki.ca_file)
    port = await serve_tls(server)
    ca = str(private_pki.ca_file)
    # Refused at the handshake, or (TLS 1.3, where the client's handshake ends first) by a
    # close before any answer: a 502 either way.
    with pytest.raises((ConnectFailed, BrokenAnswer)):
        await get_with(port, https(ca_file=ca))
    assert await get_with(port, https(ca_file=ca,
                                      client_cert_file=str(client_cert(private_pki)))) == b"ok"


async def test_skip_verify_accepts_any_certificate_and_says_so(
        private_pki: Pki, serve_tls: Callable[[ssl.SSLContext], asyncio.Task[int]],
        caplog: pytest.LogCaptureFixture) -> None:
    port = await serve_tls(private_pki.server_context(x509.DNSName("x.example"), stranger=True))
    assert await get_with(port, https(tls_insecure_skip_verify=True)) == b"ok"
    with caplog.at_level(logging.WARNING, logger="proxy.upstream"):
        warn_insecure((https(), https(tls_insecure_skip_verify=True)))
    assert [r.getMessage()[:41] for r in caplog.records] == [
        "upstreams[1].tls_insecure_skip_verify = t"]


def test_unusable_tls_files_are_one_line_naming_the_key(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    for key, upstream in (("ca_file", https(ca_file=missing)),
                          ("client_cert_file", https(client_cert_file=missing))):
        with pytest.raises(ConfigError) as caught:
            tls_context(upstream, "upstreams[0]")
        assert len(caught.value.problems) == 1
        assert caught.value.problems[0].startswith(f"upstreams[0].{key}: ")
    # Built into the route table (a file gone since check-config), the line names the route.
    with pytest.raises(ConfigError) as caught:
        RouteTable((https(), https(ca_file=missing)), AccessPolicyConfig())
    assert caught.value.problems[0].startswith("upstreams[1].ca_file: ")


async def test_https_upstream_through_the_proxy(
        make_stack: StackFactory, private_pki: Pki,
        serve_tls: Callable[[ssl.SSLContext], asyncio.Task[int]]) -> None:
    good = await serve_tls(private_pki.server_context(LOOPBACK))
    misnamed = await serve_tls(private_pki.server_context(x509.DNSName("other.example")))
    named = await serve_tls(private_pki.server_context(x509.DNSName("app.internal")))
    ca = str(private_pki.ca_file)
    stack = await make_stack({"upstreams": [
        {"path": "/good", "url": f"https://127.0.0.1:{good}", "public": ["^/"], "ca_file": ca},
        {"path": "/misnamed", "url": f"https://127.0.0.1:{misnamed}", "public": ["^/"],
         "ca_file": ca},
        # the route's server_name is the name checked (and sent as SNI), not the URL's host
        {"path": "/named", "url": f"https://127.0.0.1:{named}", "public": ["^/"],
         "ca_file": ca, "server_name": "app.internal"},
    ]})
    async with stack.client.get(stack.url + "/good/x") as resp:
        assert resp.status == 200 and await resp.read() == b"ok"
    async with stack.client.get(stack.url + "/misnamed/x") as resp:
        assert resp.status == 502
    async with stack.client.get(stack.url + "/named/x") as resp:
        assert resp.status == 200 and await resp.read() == b"ok"
