"""Access policy: AND across kinds (emails, domains, groups, roles, tenants), OR within a kind;
apps (app-only bearer tokens) only where `allow_apps` says so."""

from __future__ import annotations

from dataclasses import dataclass

from .config import AccessPolicyConfig
from .identity import Identity
from .step_up import StepUp


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


ALLOWED = Decision(True, "allowed")


@dataclass(frozen=True, slots=True)
class Policy:
    emails: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
    members_only: bool = False
    allow_apps: bool = False
    step_up: StepUp = StepUp()  # checked after the rules below, by admission.admit

    @classmethod
    def from_config(cls, config: AccessPolicyConfig) -> Policy:
        return cls(
            emails=frozenset(e.lower() for e in config.emails),
            domains=frozenset(d.lower().lstrip("@") for d in config.domains),
            groups=frozenset(g.lower() for g in config.groups),
            roles=frozenset(config.roles),
            tenants=frozenset(t.lower() for t in config.tenants),
            members_only=config.members_only,
            allow_apps=config.allow_apps,
            step_up=StepUp(tuple(config.auth_context), int(config.max_auth_age),
                           config.require_mfa),
        )

    def decide(self, identity: Identity) -> Decision:
        # Before the "no rule" shortcut: an app-only token never passes as a signed-in user.
        if identity.is_app and not self.allow_apps:
            return Decision(False, "app-only tokens (no user) are not allowed here")
        if self.members_only and (refusal := guest_refusal(identity)):
            return refusal
        if not (self.emails or self.domains or self.groups or self.roles or self.tenants):
            return ALLOWED  # no rule: every signed-in user (checked on every request)
        # Only an email Entra vouches for (ClaimRules drops the rest): `preferred_username`
        # is not an address, and an unverified `email` is anyone's (nOAuth).
        address = identity.email.lower()
        if self.emails and address not in self.emails:
            return Decision(False, "no verified email in the allowed list" if address
                            else "no verified email (Entra's xms_edov) to check")
        if self.domains and _domain(address) not in self.domains:
            return Decision(False, "verified email domain not allowed" if address
                            else "no verified email (Entra's xms_edov) to check")
        if self.groups and not {g.lower() for g in identity.groups} & self.groups:
            return Decision(False, "not a member of an allowed group")
        if self.roles and not set(identity.roles) & self.roles:
            return Decision(False, "no allowed app role")
        if self.tenants and identity.tid.lower() not in self.tenants:
            return Decision(False, "tenant not allowed")
        return ALLOWED


def guest_refusal(identity: Identity) -> Decision | None:
    """None for a member of the token's tenant; a refusal for a B2B guest, or when Entra did
    not say (no `acct` claim: fail closed). `idp` naming another tenant also marks a guest,
    whatever `acct` says: Entra writes it only for accounts homed elsewhere."""
    acct = identity.extra.get("acct")
    if acct is None:
        return Decision(False, "no acct claim to tell members from guests (add the acct "
                               "optional claim)")
    idp = identity.extra.get("idp", "")
    if acct != "0" or (idp and identity.tid.lower() not in idp.lower()):
        return Decision(False, "guest accounts are not allowed (members_only)")
    return None


def _domain(address: str) -> str:
    # Exactly one "@": "evil@allowed.com@attacker.com" must not pass a domain rule.
    if address.count("@") != 1:
        return ""
    return address.rsplit("@", 1)[1]
