"""Step-up per route: what a route asks of the sign-in (`StepUp`), and what a session has
proven (`Proof`): Conditional Access authentication contexts (`acrs`), how recently the
user authenticated (`auth_time`), and multi-factor authentication (`amr` "mfa").

A session keeps the strongest proof it has earned, each part with its time: a step-up
sign-in by the same user adds to the proof, a refresh never takes it away. A route's
`max_auth_age` asks for a recent `auth_time`, and for a recent MFA when it also asks for
MFA, so an old proof does not pass for a fresh one.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# Entra's authentication context ids: c1 to c99.
CONTEXT_ID: Final = re.compile(r"^c([1-9]|[1-9][0-9])$")
MAX_CONTEXTS: Final = 99
# The clock skew allowed between Entra and the proxy, as for ID tokens (oidc/tokens.LEEWAY):
# a sign-in that just happened always satisfies the route that asked for it.
LEEWAY: Final = 120
# The time of a proof whose token has no `auth_time`: proven, but never recent.
UNKNOWN: Final = 1
# What each missing claim means, for pages, logs and the 401's error_description.
MEANING: Final = {
    "acrs": "an authentication context (Conditional Access) this session has not satisfied",
    "auth_time": "a more recent sign-in",
    "amr": "multi-factor authentication",
}


def _time(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(frozen=True, slots=True)
class Proof:
    auth_time: int = 0  # the last authentication (ID token auth_time); 0: unknown
    mfa_time: int = 0  # when MFA was last proven (amr holds "mfa"); 0: never
    acrs: tuple[tuple[str, int], ...] = ()  # (context id, when proven), sorted by id

    @classmethod
    def from_token(cls, claims: Mapping[str, Any]) -> Proof:
        """From validated token claims. A proof's time is `auth_time`, never later than
        `iat` (authentication happens before issue). Without `auth_time` it is UNKNOWN, never
        `iat`: a token issued now (SSO, a refresh) repeats the `amr` of an authentication
        that may be hours old, which must not pass for a recent MFA."""
        iat = _time(claims.get("iat"))
        auth_time = _time(claims.get("auth_time"))
        if auth_time and iat:
            auth_time = min(auth_time, iat)
        when = auth_time or UNKNOWN
        amr = claims.get("amr")
        mfa = isinstance(amr, list) and "mfa" in amr
        acrs = claims.get("acrs")
        ids = acrs if isinstance(acrs, list) else []
        proven = sorted({v for v in ids[:MAX_CONTEXTS]
                         if isinstance(v, str) and CONTEXT_ID.match(v)})
        return cls(auth_time, when if mfa else 0, tuple((c, when) for c in proven if when))

    @classmethod
    def from_stored(cls, data: Any) -> Proof:
        """From a stored session's `proof` (to_stored's form); anything else proves nothing."""
        if not isinstance(data, dict):
            return cls()
        acrs = data.get("acrs")
        pairs = acrs.items() if isinstance(acrs, dict) else ()
        return cls(_time(data.get("auth")), _time(data.get("mfa")),
                   tuple(sorted((c, _time(t)) for c, t in list(pairs)[:MAX_CONTEXTS]
                                if isinstance(c, str) and CONTEXT_ID.match(c) and _time(t))))

    def to_stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.auth_time:
            out["auth"] = self.auth_time
        if self.mfa_time:
            out["mfa"] = self.mfa_time
        if self.acrs:
            out["acrs"] = dict(self.acrs)
        return out

    def merge(self, newer: Proof) -> Proof:
        """The strongest of both: the latest time of each part, the union of contexts."""
        acrs = dict(self.acrs)
        for context, when in newer.acrs:
            acrs[context] = max(when, acrs.get(context, 0))
        return Proof(max(self.auth_time, newer.auth_time), max(self.mfa_time, newer.mfa_time),
                     tuple(sorted(acrs.items())))


@dataclass(frozen=True, slots=True)
class StepUp:
    auth_context: tuple[str, ...] = ()  # acrs values the session must have proven
    max_age: int = 0  # seconds since the last authentication; 0: any
    mfa: bool = False  # amr must have held "mfa"

    def __bool__(self) -> bool:
        return bool(self.auth_context or self.max_age or self.mfa)

    def missing(self, proof: Proof, now: float) -> str | None:
        """The first claim the proof lacks ("acrs", "auth_time", "amr"), or None."""
        proven = dict(proof.acrs)
        if any(c not in proven for c in self.auth_context):
            return "acrs"
        if self.max_age and not self._recent(proof.auth_time, now):
            return "auth_time"
        if self.mfa and not (proof.mfa_time and (not self.max_age
                                                 or self._recent(proof.mfa_time, now))):
            return "amr"
        return None

    def _recent(self, when: int, now: float) -> bool:
        return bool(when) and now - LEEWAY - self.max_age <= when <= now + LEEWAY

    def claims_request(self) -> str:
        """The authorize request's `claims` (empty when no context is required)."""
        if not self.auth_context:
            return ""
        acrs = {"acrs": {"essential": True, "values": list(self.auth_context)}}
        return json.dumps({"id_token": acrs}, separators=(",", ":"))

    def authorize_params(self) -> dict[str, str]:
        params = {}
        if claims := self.claims_request():
            params["claims"] = claims
        if self.max_age:
            params["max_age"] = str(self.max_age)
        return params

    def challenge(self, missing: str) -> str:
        """RFC 6750 challenge in Entra's claims-challenge form: `claims` is base64 JSON."""
        wanted: dict[str, Any] = {"essential": True}
        if missing == "acrs":
            wanted["values"] = list(self.auth_context)
        elif missing == "amr":
            wanted["values"] = ["mfa"]
        claims = json.dumps({"id_token": {missing: wanted}, "access_token": {missing: wanted}},
                            separators=(",", ":"))
        encoded = base64.b64encode(claims.encode()).decode()
        return (f'Bearer realm="azure-auth-proxy", error="insufficient_claims", '
                f'error_description="step-up required: {missing}", claims="{encoded}"')

    def to_login(self) -> list[Any]:
        """Compact form for the login cookie (bounded: at most 99 ids of 3 characters)."""
        return [list(self.auth_context), self.max_age, int(self.mfa)]

    @classmethod
    def from_login(cls, value: Any) -> StepUp:
        if not isinstance(value, list) or len(value) != 3:
            return cls()
        contexts, max_age, mfa = value
        ids = tuple(c for c in contexts[:MAX_CONTEXTS] if isinstance(c, str)
                    and CONTEXT_ID.match(c)) if isinstance(contexts, list) else ()
        return cls(ids, _time(max_age), mfa == 1)


NO_STEP_UP: Final = StepUp()
