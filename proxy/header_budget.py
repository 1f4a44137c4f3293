"""Identity headers that fit stock upstreams' limits, for users in any number of groups.

Stock servers refuse long header lines: aiohttp and gunicorn at 8,190 bytes, nginx at its
8 KB `large_client_header_buffers` (4 of them for the whole head), gunicorn past 100 fields.
A GUID and its comma take 37 bytes, so 250 groups are a 9 KB line and 1,000 a 37 KB one.
So (docs/identity-headers.md):

- `[identity] groups_filter` narrows what is sent: group ids, `re:<pattern>`, or `policy`
  (only groups some access policy names). Policies always see the full list.
- No line is longer than `max_header_bytes` ("Name: value"): a list claim is split over
  repeated lines, which RFC 9110 §5.3 makes equal to one line joined with ",".
- All identity lines together stay within `max_total_header_bytes` and MAX_LINES. A list
  that does not fit is never cut short (an app would take a partial list for the whole
  one): it is left out and `<Header>-Overflow: true` says so, as Entra's overage claim does
  for its tokens. The app reads the full list from /oauth2/userinfo.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .headers import OVERFLOW_SUFFIX, PRINCIPAL_TYPE, clean_value
from .identity import Identity, join_list

LIST_CLAIMS = ("groups", "roles")
# Identity lines at most (gunicorn takes 100 header fields, aiohttp 128, Kestrel 100, and
# the client's own headers count too): lists that would pass it are left out, as over budget.
MAX_LINES = 40
POLICY = "policy"  # groups_filter entry: the groups any access policy names
PATTERN = "re:"  # groups_filter entry prefix: a regular expression (re.search)


def line_bytes(name: str, value: str) -> int:
    """The size of the header line "Name: value" (without its CRLF), as sent: UTF-8."""
    return len(name.encode()) + 2 + len(value.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True, slots=True)
class GroupsFilter:
    """Which groups go to upstreams; `None` ids and no patterns: all of them."""

    ids: frozenset[str] | None = None  # lower-cased; GUIDs compare case-insensitively
    patterns: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_config(cls, entries: Iterable[str], policy_groups: Iterable[str]) -> GroupsFilter:
        entries = tuple(entries)
        if not entries:
            return cls()
        ids: set[str] = set()
        patterns: list[re.Pattern[str]] = []
        for entry in entries:
            if entry == POLICY:
                ids.update(g.lower() for g in policy_groups)
            elif entry.startswith(PATTERN):
                patterns.append(re.compile(entry[len(PATTERN):]))
            else:
                ids.add(entry.lower())
        return cls(frozenset(ids), tuple(patterns))

    def apply(self, groups: tuple[str, ...]) -> tuple[str, ...]:
        if self.ids is None and not self.patterns:
            return groups
        ids = self.ids or frozenset()
        return tuple(g for g in groups
                     if g.lower() in ids or any(p.search(g) for p in self.patterns))


ALL_GROUPS = GroupsFilter()


def split_list(name: str, items: Iterable[str], limit: int) -> list[str] | None:
    """The values of repeated `name` lines carrying `items` (encoded by join_list), each line
    at most `limit` bytes; None if one item alone is too long for a line."""
    room = limit - line_bytes(name, "")
    values: list[str] = []
    current: list[str] = []
    size = 0
    for item in items:
        encoded = join_list((item,))
        length = len(encoded.encode("utf-8", "surrogateescape"))
        if length > room:
            return None
        if current and size + 1 + length > room:
            values.append(",".join(current))
            current, size = [], 0
        size += length + (1 if current else 0)
        current.append(encoded)
    if current:
        values.append(",".join(current))
    return values


@dataclass(frozen=True, slots=True)
class Fitted:
    pairs: list[tuple[str, str]]
    overflowed: tuple[str, ...]  # header names left out (each marked <name>-Overflow: true)


def fit_identity_headers(identity: Identity, mapping: Mapping[str, str], *, limit: int,
                         budget: int, split: bool = True) -> Fitted:
    """The configured identity headers (a claim the user lacks sends none), lists split over
    lines of at most `limit` bytes, all within `budget` bytes; the principal type always.
    `split=False` (forward-auth answers: an ingress copies one value of a header, so a
    split list would reach the app cut short): a list longer than one line is left out."""
    marker = [(PRINCIPAL_TYPE, identity.idtyp)]
    # Nearly every identity fits as it is: one line per claim, checked at a glance.
    pairs = [(name, value) for name, claim in mapping.items()
             if (value := _header_value(identity, claim))]
    sizes = [len(name) + 2 + len(value) if value.isascii() else line_bytes(name, value)
             for name, value in pairs]
    if (not sizes or max(sizes) <= limit) and sum(sizes) + _size(marker) <= budget \
            and len(pairs) < MAX_LINES:
        return Fitted(pairs + marker, ())
    return _fit_slowly(identity, mapping, limit, budget, marker, split)


def _fit_slowly(identity: Identity, mapping: Mapping[str, str], limit: int, budget: int,
                marker: list[tuple[str, str]], split: bool) -> Fitted:
    fields: list[tuple[str, list[str] | None]] = []  # (name, values); None: does not fit
    for name, claim in mapping.items():
        if claim in LIST_CLAIMS:
            items = [clean_value(v) for v in getattr(identity, claim)]
            items = [v for v in items if v]
            if items:
                values = split_list(name, items, limit)
                fields.append((name, values if split or not values or len(values) == 1
                               else None))
            continue
        value = clean_value(identity.claim(claim))
        if value:
            fields.append((name, [value] if line_bytes(name, value) <= limit else None))
    spent = _size(marker)
    dropped = {name for name, values in fields if values is None}
    # Over budget: leave out whole fields, lists first and the largest first, until the rest
    # fits (each left-out field costs its marker line instead).
    sizes = {name: _size((name, v) for v in values) for name, values in fields if values}
    counts = {name: len(values) for name, values in fields if values}
    total = spent + sum(sizes.values()) + sum(_marker_size(n) for n in dropped)
    lines = 1 + sum(counts.values()) + len(dropped)
    for name in sorted(sizes, key=lambda n: (mapping[n] not in LIST_CLAIMS, -sizes[n])):
        if total <= budget and lines <= MAX_LINES:
            break
        dropped.add(name)
        total += _marker_size(name) - sizes[name]
        lines += 1 - counts[name]
    pairs: list[tuple[str, str]] = []
    for name, values in fields:
        if name in dropped:
            pairs.append((name + OVERFLOW_SUFFIX, "true"))
        elif values:
            pairs.extend((name, v) for v in values)
    return Fitted(pairs + marker, tuple(name for name, _ in fields if name in dropped))


def _header_value(identity: Identity, claim: str) -> str:
    """A claim as one header value: list items cleaned BEFORE they are encoded (as
    _fit_slowly does), so a control character cannot hide an item's edge space from
    join_list ("Admins \x00" must not read back as "Admins")."""
    if claim not in LIST_CLAIMS:
        return clean_value(identity.claim(claim))
    return join_list(tuple(v for v in map(clean_value, getattr(identity, claim)) if v))


def _marker_size(name: str) -> int:
    return line_bytes(name + OVERFLOW_SUFFIX, "true")


def _size(pairs: Iterable[tuple[str, str]]) -> int:
    return sum(line_bytes(n, v) for n, v in pairs)
