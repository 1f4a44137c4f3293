"""Identity: the subset of ID-token claims a session keeps. Keyed on (tid, oid), never email."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .step_up import Proof


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if isinstance(v, str | int))
    return ()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Identity:
    oid: str
    tid: str
    sub: str = ""
    name: str = ""
    preferred_username: str = ""
    email: str = ""
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    sid: str = ""
    # What the session was made for: the app registration (ID token `aud`) and the tenant's
    # issuer. A session is honoured only by a proxy with the same client_id and issuer.
    aud: str = ""
    iss: str = ""
    # Entra vouched for the email's domain (xms_edov). Kept so that a reload which stops
    # trusting unverified email ends the sessions that kept one (admission re-checks it).
    email_vouched: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    # "app" for an app-only bearer token (client credentials): `oid` is then the calling
    # app's service principal, not a person. Everything else is a "user".
    idtyp: str = "user"
    # Step-up proof (acrs, auth_time, MFA) with its times: the strongest this session earned.
    proof: Proof = Proof()

    @property
    def is_app(self) -> bool:
        return self.idtyp == "app"

    @property
    def key(self) -> str:
        return f"{self.tid}/{self.oid}"

    @property
    def user(self) -> str:
        """What a person calls themselves: for display and logs, never for identity."""
        return self.preferred_username or self.email or self.oid

    def claim(self, name: str) -> str:
        """A claim rendered for a header: multi-valued claims joined with ',' (see join_list)."""
        if name in ("groups", "roles"):
            return join_list(getattr(self, name))
        if name in INTERNAL_CLAIMS:
            return ""
        if name in _SCALARS:
            return str(getattr(self, name))
        return self.extra.get(name, "")

    def public_dict(self) -> dict[str, Any]:
        """What the user's browser and apps may see (/oauth2/userinfo): no internal claims."""
        out = self.to_dict()
        for name in INTERNAL_CLAIMS:
            out.pop(name, None)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _SCALARS}
        out["groups"] = list(self.groups)
        out["roles"] = list(self.roles)
        if self.email_vouched:
            out["xms_edov"] = True
        if self.extra:
            out["extra"] = dict(self.extra)
        if self.is_app:  # users' stored sessions keep their shape
            out["idtyp"] = "app"
        if stored := self.proof.to_stored():
            out["proof"] = stored
        return out

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> Identity:
        """From a stored session (to_dict's form): its proof is read from `proof`, which a
        token's claims never set (from_claims reads a token's own acrs/amr/auth_time)."""
        return dataclasses.replace(cls.from_claims(data),
                                   proof=Proof.from_stored(data.get("proof")))

    @classmethod
    def from_claims(cls, claims: dict[str, Any], extra_claims: tuple[str, ...] = ()) -> Identity:
        """From validated ID-token claims (or a decoded session, which has the same keys)."""
        extra = dict(claims.get("extra") or {})
        for name in extra_claims:
            if name in claims and name not in _KNOWN:
                value = claims[name]
                extra[name] = ",".join(_strings(value)) if isinstance(value, list) else str(value)
        return cls(
            oid=_text(claims.get("oid")),
            tid=_text(claims.get("tid")),
            sub=_text(claims.get("sub")),
            name=_text(claims.get("name")),
            preferred_username=_text(claims.get("preferred_username")),
            email=_text(claims.get("email")),
            groups=_strings(claims.get("groups")),
            roles=_strings(claims.get("roles")),
            sid=_text(claims.get("sid")),
            aud=_audience(claims.get("aud")),
            iss=_text(claims.get("iss")),
            email_vouched=email_vouched(claims),
            extra={str(k): str(v) for k, v in extra.items()},
            # Only an explicit "app" marks an app; the bearer path decides it (oidc/bearer).
            idtyp="app" if claims.get("idtyp") == "app" else "user",
            proof=Proof.from_token(claims),
        )


def _audience(value: Any) -> str:
    # An Entra ID token has one audience; a list of one is the same thing. Anything else
    # records no audience, and a session without one is refused (fail closed).
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return _text(value)


def join_list(values: tuple[str, ...]) -> str:
    """One header value for a list: items joined with ','. Entra may emit group display
    names, which can hold a comma, so in each item '%' becomes '%25' and ',' becomes '%2C',
    and whitespace at an item's edge is percent-encoded too (as UTF-8): split on ',', strip
    whitespace (repeated lines may be joined with ", ": RFC 9110 §5.3) and percent-decode
    each item to get the list back, unambiguously."""
    return ",".join(_list_item(v) if "%" in v or "," in v or (v and (v[0].isspace()
                                                                     or v[-1].isspace()))
                    else v for v in values)


def _list_item(value: str) -> str:
    value = value.replace("%", "%25").replace(",", "%2C")
    body = value.strip()
    start = value.index(body[0]) if body else len(value)
    end = start + len(body)
    return _percent(value[:start]) + body + _percent(value[end:])


def _percent(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode("utf-8", "surrogatepass"))


_SCALARS = ("oid", "tid", "sub", "name", "preferred_username", "email", "sid", "aud", "iss")
# Kept for the proxy's own use, never sent on: Entra's `sid` is all front-channel logout
# asks for, so any app (or its logs) holding it could sign the user out everywhere; `aud`
# and `iss` bind the session to this app registration and tenant.
INTERNAL_CLAIMS = frozenset({"sid", "aud", "iss", "xms_edov", "proof"})
_KNOWN = frozenset(_SCALARS) | {"groups", "roles", "extra", "idtyp", "xms_edov", "proof"}


def email_vouched(claims: dict[str, Any]) -> bool:
    """Entra's `xms_edov` optional claim: the email's domain is verified for the user's
    tenant. Without it, `email` is whatever some tenant's admin typed (nOAuth)."""
    edov = claims.get("xms_edov")
    return edov is True or edov in (1, "1", "true", "True")


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """How a validated token's claims become an Identity: which extra claims to keep, and
    whether an unverified `email` may be trusted (single-tenant opt-in only)."""

    extra: tuple[str, ...] = ()
    trust_unverified_email: bool = False

    def identity(self, claims: dict[str, Any]) -> Identity:
        identity = Identity.from_claims(claims, self.extra)
        if identity.email and not (self.trust_unverified_email or email_vouched(claims)):
            return dataclasses.replace(identity, email="")
        return identity

    def email_dropped(self, claims: dict[str, Any]) -> bool:
        """Whether this token's `email` claim is left out (for the log line that says why)."""
        return bool(claims.get("email")) and not (self.trust_unverified_email
                                                  or email_vouched(claims))

