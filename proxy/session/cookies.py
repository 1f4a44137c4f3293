"""What a session module asks the web layer to do with cookies: plain values, no aiohttp."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CookieSpec:
    name: str
    value: str
    max_age: int | None  # None: delete the cookie
    path: str = "/"


def chunk_names(cookies: Mapping[str, str], name: str) -> list[str]:
    """Every chunk-like cookie the request carries, whatever its number (sign-out deletes
    them all; reading stops at budget.MAX_CHUNKS)."""
    pattern = re.compile(rf"^{re.escape(name)}_\d{{1,9}}$")
    return [n for n in cookies if pattern.match(n)]


def session_cookie_names(cookies: Mapping[str, str], name: str) -> list[str]:
    """The session cookie and its chunks present in a request (what sign-out deletes)."""
    return [n for n in cookies if n == name] + chunk_names(cookies, name)
