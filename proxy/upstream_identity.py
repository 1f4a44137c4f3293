"""Everything the upstream learns about the user: identity headers, the signed assertion,
the Easy Auth principal, and (server-side stores) the tokens.

Building them is a good part of a request's own work (claims cleaned one by one, the
assertion's cache key, the principal's base64 JSON), yet for one session they never change:
the cookie store hands out the same `Identity` object for the same cookie, and a server-side
store the same one while its record is unchanged. So the token-free part is built once per
(identity object, upstream) and reused until the assertion in it is due for renewal.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable

from multidict import CIMultiDict

from .assertion import AssertionSigner
from .config import IdentityConfig
from .easy_auth import PRINCIPAL, encode_principal, principal_headers, token_headers
from .header_budget import ALL_GROUPS, GroupsFilter, fit_identity_headers, line_bytes
from .headers import OVERFLOW_SUFFIX, clean_value
from .hot_cache import HotCache
from .identity import Identity, join_list
from .session.store import Session

CACHE_SIZE = 4096  # (identity, upstream) pairs; each a handful of short strings
REBUILD_AFTER = 60.0  # seconds, also without an assertion (nothing else expires sooner)

log = logging.getLogger("proxy.identity")

_Key = tuple[int, str, bool]  # (id of the identity, audience, one_line)
_Entry = tuple[Identity, list[tuple[str, str]], float, float]  # (.., built, until)
_AUTH_ANSWER = "\n"  # the audience slot of /oauth2/auth's answer (no audience has a newline)
GROUPS = "X-Auth-Request-Groups"


def auth_request_headers(identity: Identity, groups: GroupsFilter = ALL_GROUPS,
                         max_line: int = 4096) -> list[tuple[str, str]]:
    """oauth2-proxy's answer headers, cleaned like forwarded identity headers: no control
    characters (CR/LF would make aiohttp fail the answer: nginx shows a 500), and groups
    joined unambiguously (identity.join_list), as identity.groups_filter lets them through.
    Groups too long for one `max_line` line are left out and marked -Overflow (an ingress
    copies one header value: a split list would reach the app cut short)."""
    headers = {
        "X-Auth-Request-User": identity.user,
        "X-Auth-Request-Email": identity.email,
        "X-Auth-Request-Groups": join_list(tuple(clean_value(g) for g in
                                                 groups.apply(identity.groups))),
        "X-Auth-Request-Preferred-Username": identity.preferred_username,
    }
    out = {k: clean for k, v in headers.items() if (clean := clean_value(v))}
    if line_bytes(GROUPS, out.get(GROUPS, "")) > max_line:
        del out[GROUPS]
        out[GROUPS + OVERFLOW_SUFFIX] = "true"
    return list(out.items())


class IdentityHeaders:
    """Owned by the State (one per config): the headers it adds follow that config."""

    def __init__(self, config: IdentityConfig, signer: AssertionSigner | None,
                 policy_groups: Iterable[str] = ()) -> None:
        """`policy_groups`: every group an access policy names (groups_filter "policy")."""
        self._config = config
        self._signer = signer
        self.groups_filter = GroupsFilter.from_config(config.groups_filter, policy_groups)
        # Expired entries leave on their own: an identity seen once is not kept alive.
        self._built: HotCache[_Key, _Entry] = HotCache(CACHE_SIZE, REBUILD_AFTER)

    def add(self, headers: CIMultiDict[str], session: Session, audience: str | None,
            *, tokens_too: bool = True, one_line: bool = False) -> None:
        """Add the user's headers for the route whose assertion audience is `audience`
        (None: no route, or no assertion wanted). `tokens_too=False` leaves out Entra's
        tokens. Every client copy of these names was stripped before."""
        headers.extend(self._static(session.identity, audience, one_line))
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

    def auth_answer(self, identity: Identity) -> list[tuple[str, str]]:
        """`auth_request_headers` for /oauth2/auth, built once per identity like the rest
        (filtering, cleaning and joining the groups need not run on every check)."""
        key = (id(identity), _AUTH_ANSWER, True)
        now = time.time()
        if (pairs := self._kept(key, identity, now)) is None:
            pairs = auth_request_headers(identity, self.groups_filter,
                                         self._config.max_header_bytes)
            self._built.put(key, (identity, pairs, now, now + REBUILD_AFTER), now)
        return pairs

    def _static(self, identity: Identity, audience: str | None,
                one_line: bool = False) -> list[tuple[str, str]]:
        key = (id(identity), audience or "", one_line)
        now = time.time()
        if (pairs := self._kept(key, identity, now)) is None:
            pairs, until = self._build(identity, audience, now, one_line)
            self._built.put(key, (identity, pairs, now, until), now, until=until)
        return pairs

    def _kept(self, key: _Key, identity: Identity, now: float) -> list[tuple[str, str]] | None:
        """What was built for `identity` under `key`, if still good. Keyed by the object's
        id, checked by identity: an id reused after the object is gone never matches,
        because the entry holds the object it was built for. A clock gone back rebuilds
        (never an assertion from the future)."""
        entry = self._built.get(key, now)
        if entry is not None and entry[0] is identity and entry[2] <= now < entry[3]:
            return entry[1]
        return None

    def _build(self, identity: Identity, audience: str | None, now: float,
               one_line: bool) -> tuple[list[tuple[str, str]], float]:
        """The headers, each line within max_header_bytes and all within
        max_total_header_bytes (header_budget.py); groups as groups_filter lets through."""
        config = self._config
        limit = config.max_header_bytes
        shown = identity
        if config.groups_filter:
            shown = dataclasses.replace(identity, groups=self.groups_filter.apply(identity.groups))
        # The assertion and the principal are within the total too: past it, they go
        # without their groups (1), then the principal (2), then the assertion (3) is left
        # out, until everything fits (with none of them, the total holds at any size).
        total = config.max_total_header_bytes
        for level in range(4):
            extra, elsewhere, until = self._extras(shown, audience, now, level)
            fitted = fit_identity_headers(shown, config.headers, limit=limit,
                                          budget=total - _size(extra), split=not one_line)
            if _size(fitted.pairs) + _size(extra) <= total:
                break
        if fitted.overflowed or elsewhere:
            # A list left out is worth a warning; groups only moved out of the assertion or
            # the principal (while the headers carry them all) are expected from ~40 groups.
            left_out = bool(fitted.overflowed) or any("left out" in e for e in elsewhere)
            log.log(
                logging.WARNING if left_out else logging.INFO,
                "identity too large for upstream header limits user=%s groups=%d sent=%d "
                "left_out=%s without_groups=%s: set identity.groups_filter, or let the app "
                "read /oauth2/userinfo", identity.user, len(identity.groups), len(shown.groups),
                ",".join(fitted.overflowed) or "-", ",".join(elsewhere) or "-")
        return fitted.pairs + extra, until

    def _extras(self, shown: Identity, audience: str | None, now: float,
                level: int) -> tuple[list[tuple[str, str]], list[str], float]:
        """(the assertion and principal lines, what went without groups or was left out,
        until when they hold) at `level` of _build's budget steps."""
        config = self._config
        limit = config.max_header_bytes
        extra: list[tuple[str, str]] = []
        until = now + REBUILD_AFTER
        elsewhere: list[str] = []
        if self._signer is not None and audience:
            name = config.assertion_header
            token, renew_at = self._signer.assertion_until(shown, audience, now)
            if level >= 1 or line_bytes(name, token) > limit:
                elsewhere.append(name)
                token, renew_at = self._signer.assertion_until(shown, audience, now,
                                                               groups_elsewhere=True)
            if line_bytes(name, token) <= limit and level < 3:
                extra.append((name, token))
            else:
                elsewhere.append(f"{name} (left out)")
            until = min(until, renew_at)
        if config.easy_auth:
            principal = principal_headers(shown, None, with_tokens=False, max_line=limit,
                                          groups_elsewhere=level >= 1)
            if principal[0][0] == PRINCIPAL and level >= 2:
                principal = principal[1:]
            if principal[0][0] != PRINCIPAL:
                elsewhere.append(f"{PRINCIPAL} (left out)")
            elif principal[0][1] != encode_principal(shown):
                elsewhere.append(PRINCIPAL)
            extra += principal
        return extra, elsewhere, until


def _size(pairs: Iterable[tuple[str, str]]) -> int:
    return sum(line_bytes(n, v) for n, v in pairs)
