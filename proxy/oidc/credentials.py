"""Certificate client credentials for Entra's token endpoint (private_key_jwt, ENTRA.md §5).

Tenants that forbid client secrets register a certificate on the app instead; the token
request then carries a short JWT signed with its key. Load the PEM files once at start-up
and sign a fresh assertion for every token request.
"""

from __future__ import annotations

import base64
import datetime
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Entra refuses assertions that live longer than 10 minutes; 5 leaves room for clock skew.
ASSERTION_LIFETIME: Final = 300
# Below this pyjwt warns on every signature and Entra rejects the upload (NIST SP 800-131A).
MIN_RSA_BITS: Final = 2048


class CredentialError(Exception):
    """A certificate credential that cannot be used. Names the file, never key material."""


@dataclass(frozen=True, slots=True)
class CertificateCredential:
    """An app registration's certificate and its RSA key.

    Build it with `load`, which checks the pair; direct construction trusts its arguments.
    """

    certificate_pem: bytes = field(repr=False)  # the leaf certificate only, never the key
    private_key: rsa.RSAPrivateKey = field(repr=False)
    thumbprint_sha256: str  # `x5t#S256`: base64url SHA-256 of the DER certificate
    thumbprint_sha1: str  # `x5t`: base64url SHA-1, for the legacy RS256 form and for logs

    @classmethod
    def load(cls, certificate_file: str, private_key_file: str) -> CertificateCredential:
        """Read PEM files; the certificate file may also hold the key (pass its path twice)."""
        certificate_data = _read(certificate_file, "certificate")
        key_data = (
            certificate_data
            if private_key_file == certificate_file
            else _read(private_key_file, "private key")
        )
        certificate = _leaf_certificate(certificate_data, certificate_file)
        _check_validity(certificate, certificate_file, datetime.datetime.now(datetime.UTC))
        _check_public_key(certificate, certificate_file)
        private_key = _private_key(key_data, private_key_file)
        _check_pair(certificate, private_key, certificate_file, private_key_file)
        return cls(
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
            private_key=private_key,
            thumbprint_sha256=_b64url(certificate.fingerprint(hashes.SHA256())),
            thumbprint_sha1=_b64url(certificate.fingerprint(hashes.SHA1())),
        )

    def assertion(self, client_id: str, token_url: str, now: float | None = None) -> str:
        """A single-use PS256 client assertion for one request to `token_url`."""
        issued_at = int(time.time() if now is None else now)
        claims = {
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "nbf": issued_at,
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME,
        }
        # PS256 + x5t#S256 is what MSAL sends when it knows the SHA-256 thumbprint; the
        # RS256 + SHA-1 `x5t` form is legacy.
        headers = {"typ": "JWT", "x5t#S256": self.thumbprint_sha256}
        return jwt.encode(claims, self.private_key, algorithm="PS256", headers=headers)


def client_auth_fields(
    client_id: str,
    secret: str | None,
    credential: CertificateCredential | None,
    token_url: str,
) -> dict[str, str]:
    """The token-request form fields that authenticate the app (RFC 6749 §2.3, RFC 7523 §2.2)."""
    # The certificate wins: during a migration the old secret often lingers in the config,
    # and the tenant asked for the certificate.
    if credential is not None:
        return {
            "client_id": client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": credential.assertion(client_id, token_url),
        }
    if secret:
        return {"client_id": client_id, "client_secret": secret}
    raise ValueError("a client secret or a certificate credential is required")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CredentialError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from exc


def _leaf_certificate(data: bytes, path: str) -> x509.Certificate:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        # cryptography's message may quote the file's bytes; this one names the file instead.
        raise CredentialError(f"{path} holds no readable PEM certificate") from None
    # Chain files list the leaf first (RFC 8446 §4.4.2); the rest are not ours to sign with.
    return certificates[0]


def _check_validity(certificate: x509.Certificate, path: str, now: datetime.datetime) -> None:
    # Entra refuses assertions from a certificate outside its validity; fail at start-up.
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    window = f"valid from {_date(not_before)} to {_date(not_after)}, now {_date(now)}"
    if now < not_before:
        raise CredentialError(f"certificate {path} is not valid yet ({window})")
    if now > not_after:
        raise CredentialError(f"certificate {path} has expired ({window})")


def _date(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _check_public_key(certificate: x509.Certificate, path: str) -> None:
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CredentialError(
            f"certificate {path} holds a key of type {_kind(public_key)}; only RSA "
            "certificates are supported (the assertion is signed with PS256)"
        )
    if public_key.key_size < MIN_RSA_BITS:
        raise CredentialError(
            f"certificate {path} has a {public_key.key_size}-bit RSA key; "
            f"at least {MIN_RSA_BITS} bits are required"
        )


def _private_key(data: bytes, path: str) -> rsa.RSAPrivateKey:
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # No passphrase setting on purpose: it would sit next to the key it protects.
        raise CredentialError(
            f"the private key in {path} is encrypted; only unencrypted PEM keys are supported "
            "(decrypt it with `openssl pkey` and protect the file with permissions)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # from None: the parser's errors are about the key's bytes, which stay out of logs.
        raise CredentialError(f"{path} holds no readable PEM private key") from None
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise CredentialError(
            f"the private key in {path} is of type {_kind(private_key)}; only RSA keys are "
            "supported"
        )
    return private_key


def _check_pair(
    certificate: x509.Certificate,
    private_key: rsa.RSAPrivateKey,
    certificate_file: str,
    private_key_file: str,
) -> None:
    # A mismatched pair signs assertions Entra rejects with a vague 401; catch it here.
    if certificate.public_key() != private_key.public_key():
        raise CredentialError(
            f"the private key in {private_key_file} does not match the certificate "
            f"in {certificate_file}"
        )


def _kind(key: object) -> str:
    """The key type as an operator would name it: "EC (secp256r1)", "Ed25519", "DSA"."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC ({key.curve.name})"
    return type(key).__name__.removesuffix("PublicKey").removesuffix("PrivateKey")
