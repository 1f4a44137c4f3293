"""Certificates for the proxy's own TLS listener, made by the tests (cryptography): a root
CA, an intermediate, and leaf certificates for 127.0.0.1 and localhost written as a full
chain (leaf, intermediate) with their keys, as cert-manager writes tls.crt and tls.key."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _sign(subject: str, key: Key, issuer: str, issuer_key: Key, *, ca: bool,
          serial: int | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: Key, password: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


class TestCa:
    """A root and an intermediate; `issue` writes a leaf's chain and key files."""

    __test__ = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _sign("test root", self.root_key, "test root", self.root_key, ca=True)
        self.inter_key = ec.generate_private_key(ec.SECP256R1())
        self.inter = _sign("test intermediate", self.inter_key, "test root", self.root_key,
                           ca=True)
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(pem(self.root))
        self.cert_file = directory / "tls.crt"
        self.key_file = directory / "tls.key"
        self._serial = 1000

    def issue(self, cert_file: Path | None = None, key_file: Path | None = None) -> int:
        """A new key and leaf (a renewal) written to the files, in place; its serial."""
        self._serial += 1
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _sign("proxy", key, "test intermediate", self.inter_key, ca=False,
                     serial=self._serial)
        (cert_file or self.cert_file).write_bytes(pem(leaf) + pem(self.inter))
        (key_file or self.key_file).write_bytes(key_pem(key))
        return self._serial

    def client_context(self, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        """A browser-like client context trusting only the test root."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        for attribute, version in versions.items():
            setattr(context, attribute, version)
        return context


async def served_serial(port: int, context: ssl.SSLContext) -> int:
    """The serial of the certificate a NEW connection to 127.0.0.1:port is served."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


async def wait_for_serial(port: int, context: ssl.SSLContext, serial: int,
                          attempts: int = 200) -> None:
    """Until a new connection is served `serial` (up to `attempts` tries 50 ms apart)."""
    seen = 0
    for _ in range(attempts):
        seen = await served_serial(port, context)
        if seen == serial:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still served serial {seen}, not {serial}")
