"""A parsed JWKS: RSA signing keys by kid; keys of unknown types are ignored, not fatal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jwt import PyJWK
from jwt.exceptions import PyJWKError

from ..errors import IdPFailure


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    key: Any  # the cryptography public key pyjwt verifies with
    issuer: str
    cloud_instance_name: str


class UnknownKey(Exception):
    """The token names a kid the cached JWKS lacks: refetch once, then reject."""


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[SigningKey, ...]

    @classmethod
    def parse(cls, doc: Any) -> KeySet:
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise IdPFailure("The sign-in service's key set (JWKS) is malformed.")
        keys = []
        for raw in doc["keys"]:
            if not isinstance(raw, dict) or raw.get("kty") != "RSA":
                continue
            if raw.get("use", "sig") != "sig" or raw.get("alg", "RS256") != "RS256":
                continue
            try:
                jwk = PyJWK(raw, algorithm="RS256")
            except (PyJWKError, ValueError, TypeError, KeyError):
                continue
            keys.append(SigningKey(
                kid=str(raw.get("kid") or ""),
                key=jwk.key,
                issuer=str(raw.get("issuer") or ""),
                cloud_instance_name=str(raw.get("cloud_instance_name") or ""),
            ))
        return cls(tuple(keys))

    def candidates(self, kid: str | None) -> tuple[SigningKey, ...]:
        """Keys to try: the one with this kid; without a kid, every key (OIDC RP tests)."""
        if kid is None:
            return self.keys
        found = tuple(k for k in self.keys if k.kid == kid)
        if not found:
            raise UnknownKey(kid)
        return found
