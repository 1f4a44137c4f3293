"""Everything the upstream learns about the user: identity headers, the signed assertion,
the Easy Auth principal, and (server-side stores) the tokens.

Building them is a good part of a request's own work (claims cleaned one by one, the
assertion's cache key, the principal's base64 JSON), yet for one session they never change:
the cookie store hands out the same `Identity` object for the same cookie, and a server-side
store the same one while its record is unchanged. So the token-free part is built once per
(identity object, upstream) and reused until the assertion in it is due for renewal.
"""

from __future__ import annotations

import time

from multidict import CIMultiDict

from .assertion import AssertionSigner
from .config import IdentityConfig
from .easy_auth import principal_headers, token_headers
from .headers import identity_headers
from .hot_cache import HotCache
from .identity import Identity
from .session.store import Session

CACHE_SIZE = 4096  # (identity, upstream) pairs; each a handful of short strings
REBUILD_AFTER = 60.0  # seconds, also without an assertion (nothing else expires sooner)

_Entry = tuple[Identity, list[tuple[str, str]], float, float]  # (.., built, until)


class IdentityHeaders:
    """Owned by the State (one per config): the headers it adds follow that config."""

    def __init__(self, config: IdentityConfig, signer: AssertionSigner | None) -> None:
        self._config = config
        self._signer = signer
        # Expired entries leave on their own: an identity seen once is not kept alive.
        self._built: HotCache[tuple[int, str], _Entry] = HotCache(CACHE_SIZE, REBUILD_AFTER)

    def add(self, headers: CIMultiDict[str], session: Session, audience: str | None,
            *, tokens_too: bool = True) -> None:
        """Add the user's headers for the route whose assertion audience is `audience`
        (None: no route, or no assertion wanted). `tokens_too=False` leaves out Entra's
        tokens. Every client copy of these names was stripped before."""
        headers.extend(self._static(session.identity, audience))
        tokens = session.tokens
        if tokens is None or not tokens_too:
            return
        config = self._config
        if config.pass_access_token:
            headers["X-Forwarded-Access-Token"] = tokens.access_token
        if config.pass_id_token:
            headers["X-Forwarded-Id-Token"] = tokens.id_token
        if config.easy_auth and config.easy_auth_tokens:
            headers.extend(token_headers(tokens))  # after the (cached) principal headers

    def _static(self, identity: Identity, audience: str | None) -> list[tuple[str, str]]:
        # Keyed by the object's id, checked by identity: an id reused after the object is
        # gone never matches, because the entry holds the object it was built for.
        key = (id(identity), audience or "")
        now = time.time()
        entry = self._built.get(key, now)
        if entry is not None and entry[0] is identity and entry[2] <= now < entry[3]:
            return entry[1]  # (a clock gone back rebuilds: never an assertion from the future)
        config = self._config
        pairs = identity_headers(identity, config.headers)
        until = now + REBUILD_AFTER
        if self._signer is not None and audience:
            token, renew_at = self._signer.assertion_until(identity, audience, now)
            pairs.append((config.assertion_header, token))
            until = min(until, renew_at)
        if config.easy_auth:
            pairs.extend(principal_headers(identity, None, with_tokens=False))
        self._built.put(key, (identity, pairs, now, until), now, until=until)
        return pairs
