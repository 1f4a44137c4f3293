"""itsdangerous serializers: SHA-256, keys ordered oldest → newest, one salt per purpose."""

from __future__ import annotations

import hashlib
from typing import Any

from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

SESSION_SALT = "azp.session"
LOGIN_SALT = "azp.login"


def serializer(keys: list[str], salt: str) -> URLSafeTimedSerializer:
    """The newest key (last) signs; every key verifies, so rotation logs nobody out."""
    return URLSafeTimedSerializer(
        keys, salt=salt, signer_kwargs={"digest_method": hashlib.sha256}
    )


class _Uncompressed(URLSafeTimedSerializer):
    """Never zlib-compresses what it signs (it still reads compressed values). For
    payloads of random strings, which do not compress: zlib's set-up alone was a tenth of
    the sign-in redirect's CPU."""

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(self.serializer.dumps(obj, **self.serializer_kwargs).encode())


def uncompressed_serializer(keys: list[str], salt: str) -> URLSafeTimedSerializer:
    return _Uncompressed(keys, salt=salt, signer_kwargs={"digest_method": hashlib.sha256})
