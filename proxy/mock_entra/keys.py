"""RSA signing keys with self-signed certificates, the JWKS, rotation and JWS signing."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .faults import SIGN_MODES, apply_overrides

# Entra publishes the new key and the previous one (ENTRA.md §10.3).
PUBLISHED_KEYS = 2


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint_b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def make_certificate(private_key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    """A self-signed certificate, as Entra publishes in `x5c` (and as apps upload)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(private_key, hashes.SHA256())
    )


def thumbprint_sha1(certificate: x509.Certificate) -> str:
    """`x5t`: base64url SHA-1 of the DER certificate; Entra's `kid` is the same value."""
    return b64url(certificate.fingerprint(hashes.SHA1()))


def thumbprint_sha256(certificate: x509.Certificate) -> str:
    """`x5t#S256`: base64url SHA-256 of the DER certificate."""
    return b64url(certificate.fingerprint(hashes.SHA256()))


@dataclass(frozen=True)
class SigningKey:
    """One RSA key and its certificate."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, common_name: str = "mock-entra signing") -> SigningKey:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(private_key, make_certificate(private_key, common_name))

    @property
    def kid(self) -> str:
        return thumbprint_sha1(self.certificate)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign_rs256(self, data: bytes) -> bytes:
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def jwk(self) -> dict[str, Any]:
        """The JWKS member in Entra's shape, minus the per-tenant fields."""
        numbers = self.public_key.public_numbers()
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _uint_b64url(numbers.n),
            "e": _uint_b64url(numbers.e),
            "x5c": [base64.b64encode(der).decode("ascii")],
        }


class KeyRing:
    """The published keys, oldest first; the newest signs."""

    def __init__(self) -> None:
        self._keys = [SigningKey.generate()]
        self._outsider: SigningKey | None = None
        self._app_keys: dict[str, SigningKey] = {}

    @property
    def current(self) -> SigningKey:
        return self._keys[-1]

    @property
    def published(self) -> tuple[SigningKey, ...]:
        return tuple(self._keys)

    @property
    def outsider(self) -> SigningKey:
        """A key never published, for the "other_key" fault; made on first use."""
        if self._outsider is None:
            self._outsider = SigningKey.generate("mock-entra outsider")
        return self._outsider

    def app_key(self, client_id: str) -> SigningKey:
        """The app-specific key of a claims-mapping app; made on first use."""
        if client_id not in self._app_keys:
            self._app_keys[client_id] = SigningKey.generate(f"mock-entra app {client_id}")
        return self._app_keys[client_id]

    def rotate(self) -> None:
        """Add a key, sign with it from now on, keep only the newest PUBLISHED_KEYS."""
        self._keys.append(SigningKey.generate())
        del self._keys[:-PUBLISHED_KEYS]

    def find(self, kid: str) -> SigningKey | None:
        return next((key for key in self._keys if key.kid == kid), None)

    def jwks(self, *, issuer: str, cloud_instance_name: str, with_kid: bool,
             app_key: SigningKey | None = None) -> dict[str, Any]:
        keys = []
        for key in (*self._keys, *([app_key] if app_key else [])):
            jwk = key.jwk() | {"cloud_instance_name": cloud_instance_name, "issuer": issuer}
            if not with_kid:
                del jwk["kid"], jwk["x5t"]
            keys.append(jwk)
        return {"keys": keys}


def encode_jws(
    header: Mapping[str, Any], claims: Mapping[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    """Compact JWS built by hand, so faults can shape headers pyjwt would not emit."""

    def part(obj: Mapping[str, Any]) -> str:
        return b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8"))

    signing_input = f"{part(header)}.{part(claims)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


def sign_id_token(
    ring: KeyRing, claims: Mapping[str, Any], mode: str, header_overrides: Mapping[str, Any],
    *, key: SigningKey | None = None,
) -> str:
    """Sign an ID token (with `key`, else the tenant's current key) as Faults.sign says,
    then apply the header overrides."""
    if mode not in SIGN_MODES:
        raise ValueError(f"Faults.sign {mode!r} must be one of {sorted(SIGN_MODES)}")
    key = key or ring.current
    alg = {"none": "none", "hs256_pubkey": "HS256"}.get(mode, "RS256")
    header = apply_overrides({"typ": "JWT", "alg": alg, "kid": key.kid}, header_overrides)
    return encode_jws(header, claims, _signer(key, ring, mode))


def _signer(key: SigningKey, ring: KeyRing, mode: str) -> Callable[[bytes], bytes]:
    if mode == "none":
        return lambda _data: b""
    if mode == "hs256_pubkey":
        # The classic key-confusion attack: the RSA public key PEM as an HMAC secret.
        return lambda data: hmac.new(key.public_pem(), data, hashlib.sha256).digest()
    if mode == "other_key":
        return ring.outsider.sign_rs256
    if mode == "bad_signature":
        return lambda data: bytes(b ^ 0xFF for b in key.sign_rs256(data))
    return key.sign_rs256
