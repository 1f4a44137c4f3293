"""Encryption at rest for server-side session records: AES-256-GCM, keys derived by HKDF
from the session secrets (newest encrypts, all decrypt, so rotation loses no session)."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"azure-auth-proxy session record v1"


class RecordUnreadable(Exception):
    """Tampered, truncated, or encrypted with a key no longer configured."""


def _derive(secret: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret.encode())
    return AESGCM(key)


class RecordCipher:
    def __init__(self, secrets_oldest_first: list[str]) -> None:
        self._ciphers = [_derive(s) for s in reversed(secrets_oldest_first)]  # newest first

    def seal(self, plaintext: bytes, session_id: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._ciphers[0].encrypt(nonce, plaintext, session_id.encode())

    def open(self, sealed: bytes, session_id: str) -> bytes:
        nonce, body = sealed[:12], sealed[12:]
        for cipher in self._ciphers:
            try:
                return cipher.decrypt(nonce, body, session_id.encode())
            except (InvalidTag, ValueError):
                continue
        raise RecordUnreadable(session_id[:8])
