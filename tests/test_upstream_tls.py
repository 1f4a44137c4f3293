"""https:// upstreams: the upstream client verifies the certificate chain and the name."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

from proxy.upstream_client import ConnectFailed, UpstreamPool

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


async def get(port: int) -> bytes:
    pool = UpstreamPool()
    try:
        response = await pool.request("GET", ("https", "127.0.0.1", port), "/",
                                      CIMultiDict({"Host": "127.0.0.1"}), None, 2.0)
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
