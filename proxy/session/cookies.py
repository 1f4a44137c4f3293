"""What a session module asks the web layer to do with cookies: plain values, no aiohttp."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CookieSpec:
    name: str
    value: str
    max_age: int | None  # None: delete the cookie
    path: str = "/"
