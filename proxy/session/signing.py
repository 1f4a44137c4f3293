"""itsdangerous serializers: SHA-256, keys ordered oldest → newest, one salt per purpose."""

from __future__ import annotations

import hashlib

from itsdangerous import URLSafeTimedSerializer

SESSION_SALT = "azp.session"
LOGIN_SALT = "azp.login"


def serializer(keys: list[str], salt: str) -> URLSafeTimedSerializer:
    """The newest key (last) signs; every key verifies, so rotation logs nobody out."""
    return URLSafeTimedSerializer(
        keys, salt=salt, signer_kwargs={"digest_method": hashlib.sha256}
    )
