"""How the user authenticates at /authorize: the SSO session, `prompt=login`, `max_age`, and
Conditional Access authentication contexts requested with `claims` (ENTRA.md §5).

What the mock does, and why:
- Each user has one Entra sign-in session (`MockEntra.authentications`): its time is the ID
  token's `auth_time`. An interactive sign-in (the account picker's POST) authenticates anew;
  `auto_user` rides the SSO session, as a browser with an Entra cookie does, unless
  `prompt=login` or `max_age` (older than `max_age` seconds) forces a new authentication.
- `claims={"id_token":{"acrs":{"essential":true,"values":["c1"]}}}` (or `"value":"c1"`) asks
  for authentication contexts. Every context the mock knows is tied to a Conditional Access
  policy that requires MFA: requesting one performs MFA (a step-up, which also refreshes
  `auth_time`) and the token's `acrs` lists the satisfied ones. A context in
  `MockEntra.unsatisfiable_contexts` is one the user cannot meet: it is left out of `acrs`.
- MFA (`amr` "mfa") is done when the user has `mfa` set (per-user MFA, or a policy for all
  apps) or when a context was satisfied. Real v2.0 ID tokens carry no `amr` (Microsoft
  documents it for v1.0 tokens; users report v2.0 omits it), so the mock puts `amr` in ID
  tokens only when `MockEntra.id_token_amr` is set: tests turn it on to model an IdP that
  reports it, and check that the proxy refuses when it is missing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from .errors import EntraError

# Entra's authentication context ids: c1 to c99 (Conditional Access > Authentication context).
CONTEXT_ID: Final = re.compile(r"^c([1-9]|[1-9][0-9])$")
MAX_CLAIMS_PARAMETER: Final = 8192


@dataclass(frozen=True)
class Authentication:
    """One authentication event at Entra: when, and whether MFA was performed."""

    time: int
    mfa: bool


@dataclass(frozen=True)
class Request:
    """What the authorize request asks of the authentication."""

    contexts: tuple[str, ...] = ()  # acrs values requested as essential
    max_age: int | None = None
    force: bool = False  # prompt=login


def parse_request(params: dict[str, str]) -> Request:
    """The `claims`, `max_age` and `prompt` parameters; malformed ones are Entra's errors."""
    contexts: tuple[str, ...] = ()
    if "claims" in params:
        contexts = _requested_contexts(params["claims"])
    raw = params.get("max_age", "")
    # OIDC: a non-negative number of seconds; the mock ignores anything else.
    max_age = int(raw) if raw.isdigit() and len(raw) <= 10 else None
    return Request(contexts, max_age, params.get("prompt") == "login")


def _requested_contexts(raw: str) -> tuple[str, ...]:
    if len(raw) > MAX_CLAIMS_PARAMETER:
        raise EntraError("invalid_request", 9000410, "Malformed JSON: claims too long.")
    try:
        claims = json.loads(raw)
    except ValueError:
        raise EntraError("invalid_request", 9000410, "Malformed JSON") from None
    if not isinstance(claims, dict):
        raise EntraError("invalid_request", 9000410, "Malformed JSON")
    id_token: Any = claims.get("id_token")
    acrs: Any = id_token.get("acrs") if isinstance(id_token, dict) else None
    if not isinstance(acrs, dict) or not acrs.get("essential"):
        return ()
    values = acrs.get("values", [acrs["value"]] if "value" in acrs else [])
    if not isinstance(values, list):
        return ()
    return tuple(v for v in values if isinstance(v, str) and CONTEXT_ID.match(v))


def authenticate(last: Authentication | None, request: Request, *, interactive: bool,
                 user_mfa: bool, satisfiable: tuple[str, ...], now: int) -> Authentication:
    """The authentication this sign-in rests on: the SSO session's, or a new one."""
    if last is None or interactive or request.force or (
            request.max_age is not None and now - last.time > request.max_age) or (
            (satisfiable or user_mfa) and not last.mfa):
        return Authentication(now, user_mfa or bool(satisfiable))
    return last


def id_token_proof(auth: Authentication, satisfied: tuple[str, ...], *,
                   amr: bool) -> dict[str, Any]:
    """`auth_time`, `acrs` (only when contexts were requested and met) and, if enabled, `amr`."""
    claims: dict[str, Any] = {"auth_time": auth.time}
    if satisfied:
        claims["acrs"] = list(satisfied)
    if amr:
        claims["amr"] = ["pwd", "mfa"] if auth.mfa else ["pwd"]
    return claims
