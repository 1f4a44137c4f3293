"""The `{tenant}` path segment: common, organizations, consumers, a GUID or a domain."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from .users import CONSUMERS_TENANT_ID, MockUser

TenantKind = Literal["common", "organizations", "consumers", "tenant"]

# What Entra puts in place of the tenant id in multi-tenant issuers (ENTRA.md §1).
TENANT_PLACEHOLDER = "{tenantid}"


@dataclass(frozen=True)
class Tenant:
    """A resolved tenant segment."""

    kind: TenantKind
    # The segment the mock puts in endpoint URLs: domains resolve to their GUID.
    canonical: str
    # The tenant in the discovery issuer; None means the `{tenantid}` template.
    tid: str | None

    def allows(self, user: MockUser) -> bool:
        """Whether `user` may sign in on this tenant segment."""
        if self.kind == "common":
            return True
        if self.kind == "organizations":
            return user.tid != CONSUMERS_TENANT_ID
        if self.kind == "consumers":
            return user.tid == CONSUMERS_TENANT_ID
        # A B2B guest signs in on the resource tenant's own authority only.
        return user.tid.lower() == self.tid or (self.tid or "") in user.guest_in

    def issuer(self, base: str) -> str:
        """The discovery `issuer`: literal `{tenantid}` for common/organizations."""
        return f"{base}/{self.tid or TENANT_PLACEHOLDER}/v2.0"


def resolve_tenant(
    segment: str, known_tids: Iterable[str], domains: Mapping[str, str]
) -> Tenant | None:
    """Resolve a path segment, or None for an unknown tenant (AADSTS90002)."""
    lowered = segment.lower()
    if lowered == "common":
        return Tenant(kind="common", canonical="common", tid=None)
    if lowered == "organizations":
        return Tenant(kind="organizations", canonical="organizations", tid=None)
    if lowered in ("consumers", CONSUMERS_TENANT_ID):
        return Tenant(kind="consumers", canonical=lowered, tid=CONSUMERS_TENANT_ID)
    by_domain = {domain.lower(): tid.lower() for domain, tid in domains.items()}
    if lowered in by_domain:
        tid = by_domain[lowered]
        return Tenant(kind="tenant", canonical=tid, tid=tid)
    if _is_guid(lowered) and lowered in {tid.lower() for tid in known_tids}:
        return Tenant(kind="tenant", canonical=lowered, tid=lowered)
    return None


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
