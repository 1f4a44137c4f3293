"""Post-login and sign-out targets: hostile input with a module of its own.

A target is allowed when it is a same-origin relative path, or an absolute http(s) URL whose
host is the proxy's own or in `allowed_redirect_hosts` (`*.example.com` with a dot boundary).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

# Control characters, whitespace and backslashes have no business in a redirect target;
# browsers strip or reinterpret them, which is how most open-redirect bypasses work.
_FORBIDDEN = re.compile(
    r"[\x00-\x20\x7f-\x9f\\\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f\u3000\ufeff]"
)
# Once decoded, a space is harmless ("?q=a%20b"); control characters and backslashes are not.
_FORBIDDEN_DECODED = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# oauth2-proxy's rule: a slash, nothing or "." or "..", then a slash again, anywhere in the
# path or query ("//", "/./", "/\\", "/../") is how a relative target escapes its origin.
_SLASH_ESCAPE = re.compile(r"[/\\](?:[\s\v]*|\.{1,2})[/\\]")
_MAX_LENGTH = 2048


def _decoded_forms(target: str) -> list[str]:
    """Every percent-decoding of `target` until it stops changing (bounded by its length)."""
    forms = [target]
    while len(forms) <= len(target):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return forms


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """`host` (lowercase, no trailing dot: urlsplit's hostname as is_safe passes it) is in
    `allowed_redirect_hosts`. The proxy's own host is is_safe's to judge (scheme and port)."""
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern.startswith(("*.", ".")):
            suffix = "." + pattern.lstrip("*.")
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif host == pattern:
            return True
    return False


def safe_target(target: str | None, public_url: str, allowed_hosts: tuple[str, ...] = (),
                default: str = "/") -> str:
    """Return `target` when it is safe to redirect to, else `default`."""
    return target if target and is_safe(target, public_url, allowed_hosts) else default


def is_safe(target: str, public_url: str, allowed_hosts: tuple[str, ...] = ()) -> bool:
    if not target or len(target) > _MAX_LENGTH or not target.isascii():
        return False
    if _FORBIDDEN.search(target):
        return False
    if any(_FORBIDDEN_DECODED.search(form) for form in _decoded_forms(target)[1:]):
        return False
    if target.startswith("/"):
        return _tail_safe(target)
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return False
    own = urlsplit(public_url)
    host = parts.hostname.rstrip(".")  # "tools.example.com." is the same host
    if host == (own.hostname or "").lower():
        own_port = own.port or _DEFAULT_PORTS.get(own.scheme)
        if parts.scheme != own.scheme or (port or _DEFAULT_PORTS[parts.scheme]) != own_port:
            return False
    elif not _host_allowed(host, allowed_hosts):
        return False
    return _tail_safe(target[len(parts.scheme) + 3 + len(parts.netloc):] or "/")


def _tail_safe(tail: str) -> bool:
    """The path and query of a target, in every decoding, must not escape to another origin."""
    return not any(_SLASH_ESCAPE.search(form) for form in _decoded_forms(tail))
