"""itsdangerous serializers: SHA-256, keys ordered oldest → newest, one salt per purpose;
and the brief cache of signed cookie values already verified."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from itsdangerous import BadData, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from ..hot_cache import HotCache

SESSION_SALT = "azp.session"
LOGIN_SALT = "azp.login"
VERIFIED_CACHE_SIZE = 20_000  # entries: a decoded value each, keyed by a 32-byte digest
VERIFIED_CACHE_TTL = 60.0
# Copied, never updated: a copy skips OpenSSL's digest lookup (0.85 vs 0.98 us, timeit).
_SHA256 = hashlib.sha256()
T = TypeVar("T")


def app_salt(salt: str, app: str) -> str:
    """The salt of one purpose for one application (its client_id): two proxies that share
    a secret still cannot read each other's cookies."""
    return f"{salt}:{app}"


class _Uncompressed(URLSafeTimedSerializer):
    """Never zlib-compresses what it signs (it still reads compressed values)."""

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(self.serializer.dumps(obj, **self.serializer_kwargs).encode())


def serializer(keys: list[str], salt: str, *, compress: bool = True) -> URLSafeTimedSerializer:
    """The newest key (last) signs; every key verifies, so rotation logs nobody out.
    compress=False for payloads of random strings, which do not compress: zlib's set-up
    alone was a tenth of the sign-in redirect's CPU."""
    kind = URLSafeTimedSerializer if compress else _Uncompressed
    return kind(keys, salt=salt, signer_kwargs={"digest_method": hashlib.sha256})


class VerifiedCookies(Generic[T]):
    """Signed cookie values, verified and decoded once a minute at most: the same browser
    sends the same cookie on every request, and HMAC + base64 + JSON each time was the hot
    path's main cost. Keyed by the digest of the exact value; an entry never outlives the
    cookie's own max_age (itsdangerous counts whole seconds: this holds it to the exact
    one). `accept` turns a verified payload into the value, or None to refuse it."""

    def __init__(self, signer: URLSafeTimedSerializer, max_age: float,
                 accept: Callable[[Any], T | None]) -> None:
        self._signer = signer
        self._max_age = max_age
        self._accept = accept
        self._cache: HotCache[bytes, T] = HotCache(VERIFIED_CACHE_SIZE, VERIFIED_CACHE_TTL)

    def load(self, raw: str) -> T | None:
        # surrogateescape: a cookie with bytes that are not UTF-8 is junk, never a 500.
        hasher = _SHA256.copy()
        hasher.update(raw.encode("utf-8", "surrogateescape"))
        digest = hasher.digest()
        now = time.time()
        hit = self._cache.get(digest, now)
        if hit is not None:
            return hit
        try:
            payload, signed = self._signer.loads(raw, max_age=int(self._max_age),
                                                 return_timestamp=True)
        except (BadData, ValueError, UnicodeError):  # (JSONDecodeError is a ValueError)
            return None
        value = self._accept(payload)
        expires = signed.timestamp() + self._max_age
        if value is None or expires <= now:
            return None
        self._cache.put(digest, value, now, until=expires)
        return value

    def __contains__(self, digest: object) -> bool:
        """Whether a verified value is held for this digest, expired or not."""
        return digest in self._cache
