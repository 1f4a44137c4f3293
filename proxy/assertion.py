"""The signed identity assertion: a short JWT that lets an upstream prove who the proxy let in.

Plain identity headers are only as trustworthy as the network path: anything that reaches the
upstream without passing the proxy can set them. `[identity] assertion_header` adds a JWT
signed with a key only the proxy holds, published at `/oauth2/jwks` (the role of Pomerium's
`X-Pomerium-Jwt-Assertion` and Google IAP's `x-goog-iap-jwt-assertion`).
docs/upstream-verification.md shows an upstream how to check it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import jwt
from cachetools import TTLCache
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .identity import Identity

# Pomerium's lifetime: room for clock skew and for reuse (below), short enough that a leaked
# assertion is soon worth nothing.
DEFAULT_LIFETIME: Final = 300
MIN_RSA_BITS: Final = 2048
# Identity fields copied into the token verbatim. The cache key is built from the same list,
# so a claim cannot be signed without also deciding which cached token is reused.
# `idtyp` ("user" or "app") tells an app-only caller from a person (Entra's own claim name).
SIGNED_FIELDS: Final = ("oid", "tid", "email", "preferred_username", "name", "groups", "roles",
                        "idtyp")

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_CacheKey = tuple[str, bool, tuple[str | tuple[str, ...], ...]]
# Where an assertion too long to carry the groups points instead (Entra's overage form).
USERINFO_PATH: Final = "/oauth2/userinfo"


class AssertionKeyError(Exception):
    """A signing key that cannot be used. Names the file, never key material."""


class AssertionSigner:
    """Signs identity assertions with one key and publishes its public half as a JWKS.

    A signed token is reused for the same identity and audience while more than half its
    lifetime is left. The cache belongs to the instance and is not thread-safe: one signer per
    event loop, like the app's other caches.
    """

    def __init__(
        self,
        issuer: str,
        private_key: SigningKey,
        *,
        lifetime: int = DEFAULT_LIFETIME,
        cache_size: int = 10_000,
    ) -> None:
        if lifetime < 2:
            raise ValueError(f"lifetime must be at least 2 seconds, got {lifetime}")
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.issuer = _origin(issuer)
        self.algorithm = _algorithm(private_key, "the assertion signing key")
        self.lifetime = lifetime
        self._private_key = private_key
        self._public_jwk = _public_jwk(private_key.public_key())
        self.kid = thumbprint(self._public_jwk)
        # The TTL bounds memory on the monotonic clock; `_fresh` decides reuse on the
        # wall clock the token's own `exp` is written in.
        self._cache: TTLCache[_CacheKey, tuple[str, int]] = TTLCache(
            maxsize=cache_size, ttl=lifetime / 2
        )

    @classmethod
    def generate(cls, issuer: str) -> AssertionSigner:
        """A signer with a fresh P-256 key (ES256): fine for one process, lost on restart."""
        return cls(issuer, ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_file(cls, issuer: str, key_file: str) -> AssertionSigner:
        """A signer with an unencrypted PEM key: EC P-256 (ES256) or RSA >= 2048 bits (RS256).

        Replicas that share the file sign with the same key, so any of them can serve the JWKS.
        """
        try:
            data = Path(key_file).read_bytes()
        except OSError as exc:
            raise AssertionKeyError(
                f"cannot read the assertion key file {key_file}: {exc.strerror or exc}"
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            # No passphrase setting on purpose: it would sit next to the key it protects.
            raise AssertionKeyError(
                f"the assertion key in {key_file} is encrypted; only unencrypted PEM keys are "
                "supported (decrypt it with `openssl pkey` and protect the file with permissions)"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            # from None: the parser's errors are about the key's bytes, which stay out of logs.
            raise AssertionKeyError(f"{key_file} holds no readable PEM private key") from None
        _algorithm(key, f"the assertion key in {key_file}")
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):  # for mypy
            raise AssertionKeyError(f"the assertion key in {key_file} is of type {_kind(key)}")
        return cls(issuer, key)

    def jwks(self) -> dict[str, Any]:
        """The JWKS served at /oauth2/jwks (RFC 7517 §5): the one public signing key."""
        key = {**self._public_jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}
        return {"keys": [key]}

    def assertion(self, identity: Identity, audience: str, now: float | None = None) -> str:
        """The signed assertion of `identity` for the upstream whose origin is `audience`."""
        return self.assertion_until(identity, audience, now)[0]

    def assertion_until(self, identity: Identity, audience: str, now: float | None = None,
                        *, groups_elsewhere: bool = False) -> tuple[str, float]:
        """The assertion, and the wall-clock time until which it may be reused.

        `groups_elsewhere`: no `groups` claim but Entra's overage marker (`_claim_names`,
        `_claim_sources`) pointing at /oauth2/userinfo, for a list too long for a header."""
        if not audience:
            raise ValueError("an assertion needs an audience (the upstream's origin)")
        moment = time.time() if now is None else now
        fields = tuple(_field(identity, name) for name in SIGNED_FIELDS)
        key: _CacheKey = (audience, groups_elsewhere, fields)
        try:  # half the cost of TTLCache.get, which looks the key up twice
            token, issued_at = self._cache[key]
            if self._fresh(issued_at, moment):
                return token, issued_at + self.lifetime / 2
        except KeyError:
            pass
        issued_at = int(moment)
        token = self._sign(identity, audience, issued_at, groups_elsewhere)
        self._cache[key] = (token, issued_at)
        return token, issued_at + self.lifetime / 2

    def __repr__(self) -> str:
        return f"AssertionSigner({self.issuer!r}, algorithm={self.algorithm!r}, kid={self.kid!r})"

    def _fresh(self, issued_at: int, moment: float) -> bool:
        # Reused only while more than half the lifetime is left, so an upstream never gets an
        # assertion about to expire; a clock that went back gets a new one, never a future iat.
        return issued_at <= moment < issued_at + self.lifetime / 2

    def _sign(self, identity: Identity, audience: str, issued_at: int,
              groups_elsewhere: bool = False) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            # Entra's own `sub` is pairwise per app registration and means nothing to the
            # upstream; `oid` alone differs per tenant for one guest (ENTRA.md). The proxy keys
            # users on (tid, oid), so `sub` is that pair: one stable string to key on.
            "sub": identity.key,
            **{name: _claim(identity, name) for name in SIGNED_FIELDS},
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self.lifetime,
        }
        if groups_elsewhere:
            # As Entra's own overage: no `groups` at all (an empty list would read as "in no
            # group"), and where the full list is.
            del claims["groups"]
            claims["_claim_names"] = {"groups": "src1"}
            claims["_claim_sources"] = {"src1": {"endpoint": self.issuer + USERINFO_PATH}}
        # No `jti`: the token is reused across requests on purpose, so it would not be unique.
        return jwt.encode(claims, self._private_key, algorithm=self.algorithm,
                          headers={"kid": self.kid, "typ": "JWT"})


def _public_jwk(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> dict[str, str]:
    """The required members of the key's JWK (RFC 7518 §6), nothing else."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        numbers = key.public_numbers()
        # RFC 7518 §6.2.1.2: coordinates are full-length, leading zeros kept.
        return {"kty": "EC", "crv": "P-256", "x": _b64url(numbers.x.to_bytes(size, "big")),
                "y": _b64url(numbers.y.to_bytes(size, "big"))}
    rsa_numbers = key.public_numbers()
    return {"kty": "RSA", "n": _b64url(_uint(rsa_numbers.n)), "e": _b64url(_uint(rsa_numbers.e))}


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 JWK thumbprint: base64url SHA-256 of the required members, sorted, no spaces."""
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def _algorithm(key: object, source: str) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise AssertionKeyError(
                f"{source} is on curve {key.curve.name}; only P-256 (secp256r1, ES256) is "
                "supported"
            )
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise AssertionKeyError(
                f"{source} is a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS} bits "
                "are required"
            )
        return "RS256"
    raise AssertionKeyError(
        f"{source} is of type {_kind(key)}; use an EC P-256 key (ES256) or an RSA key of at "
        f"least {MIN_RSA_BITS} bits (RS256)"
    )


def _origin(issuer: str) -> str:
    # Upstreams compare `iss` as a string: one spelling, the public_url's origin.
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        raise ValueError(f"the issuer must be an origin like https://proxy.example.com, "
                         f"got {issuer!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _field(identity: Identity, name: str) -> str | tuple[str, ...]:
    value: str | tuple[str, ...] = getattr(identity, name)
    return tuple(value) if name in ("groups", "roles") else value


def _claim(identity: Identity, name: str) -> str | list[str]:
    # Always present, lists never null: Pomerium learned that `null` groups break libraries.
    value = _field(identity, name)
    return list(value) if isinstance(value, tuple) else value


def _uint(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _kind(key: object) -> str:
    """The key type as an operator would name it: "EC (secp384r1)", "Ed25519", "DSA"."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC ({key.curve.name})"
    return type(key).__name__.removesuffix("PrivateKey")
