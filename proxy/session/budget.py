"""The proxy's cookie budget: how much of a request's Cookie header the proxy may fill.

nginx reads a request header line into an 8 KiB buffer by default
(`large_client_header_buffers 4 8k`), and browsers drop a cookie past 4096 bytes. The
proxy's own cookies (session, its chunks, pending logins) therefore stay within
COOKIE_BUDGET together, leaving the rest of that line to the apps' own cookies:
- a session cookie (cookie store) is at most SESSION_MAX bytes, in at most MAX_CHUNKS
  cookies; an identity that does not fit fails the sign-in with a page that says to use a
  server-side store, instead of writing cookies no browser or front proxy would keep;
- a login's return target is at most MAX_TARGET characters, so one login cookie is at
  most about 1.6 KB;
- starting a login evicts the oldest pending logins until the session and the logins
  that remain, with the new one, fit the budget.
"""

from __future__ import annotations

from collections.abc import Iterable

COOKIE_BUDGET = 7680  # bytes of `name=value; ` for all of the proxy's cookies together
CHUNK_SIZE = 4000  # browsers cap one cookie at 4096 bytes including its name and attributes
SESSION_MAX = 6000  # a signed session value (cookie store): about 200 groups
MAX_CHUNKS = -(-SESSION_MAX // CHUNK_SIZE)  # written and read back alike: 2
MAX_TARGET = 1024  # characters of the URL a login returns to


def cookie_bytes(pairs: Iterable[tuple[str, str]]) -> int:
    """What these cookies add to a Cookie header (`name=value; ` each)."""
    return sum(len(name) + len(value) + 3 for name, value in pairs)
