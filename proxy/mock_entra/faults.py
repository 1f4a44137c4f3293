"""Switches that make the mock misbehave, mirroring the OIDF RP tests (ENTRA.md §8)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final


class _Delete:
    """Type of DELETE; a class (not None) so None stays a legal claim value."""

    def __repr__(self) -> str:
        return "DELETE"


# Value for Faults.id_token_claims / id_token_header / userinfo_claims: remove the member.
DELETE: Final = _Delete()

SIGN_MODES: Final = frozenset({"rs256", "none", "bad_signature", "hs256_pubkey", "other_key"})


@dataclass
class Faults:
    """All default to behaving; tests flip them between requests."""

    # Override ID token claims; DELETE removes one (e.g. {"sub": DELETE}).
    id_token_claims: dict[str, Any] = field(default_factory=dict)
    # Override or extend the ID token's JOSE header; DELETE removes (e.g. {"kid": DELETE}).
    id_token_header: dict[str, Any] = field(default_factory=dict)
    # "rs256" | "none" | "bad_signature" | "hs256_pubkey" | "other_key"
    sign: str = "rs256"
    # The token endpoint answers this status and JSON body instead of tokens.
    token_error: tuple[int, dict[str, Any]] | None = None
    # (error, error_description): authorize redirects back with these instead of a code.
    authorize_error: tuple[str, str] | None = None
    discovery_issuer: str | None = None
    discovery_status: int | None = None
    # Discovery names this `msgraph_host` (a tampered document): Graph calls, with the user's
    # access token, would go there if the client believed it.
    discovery_msgraph_host: str | None = None
    jwks_status: int | None = None
    # The key set answers `302 Location: <this>`: keys from wherever that is, if followed.
    jwks_redirect: str | None = None
    # Only the v1 key set (/{tenant}/discovery/keys) fails: shows who reads which keys.
    v1_jwks_status: int | None = None
    token_delay: float = 0.0
    # The token endpoint answers `307 Location: <this>` (a tampered or intercepted endpoint):
    # a client that followed it would send its credential and the code there.
    token_redirect: str | None = None
    # JWKS keys without kid/x5t; combine with id_token_header={"kid": DELETE} as needed.
    jwks_without_kid: bool = False
    # Publish the keys with this `issuer` / `cloud_instance_name` instead of the tenant's:
    # a key that belongs to another tenant or cloud (the key-issuer binding, ENTRA.md §3).
    jwks_issuer: str | None = None
    jwks_cloud_instance_name: str | None = None
    # Return the (Graph) access token in the id_token field.
    access_token_as_id_token: bool = False
    # Seconds added to the `Date` header of every answer (a far-off IdP clock, for `doctor`).
    date_offset: float = 0.0
    # Graph and userinfo answer this status.
    graph_status: int | None = None
    # Override userinfo members; DELETE removes (e.g. {"sub": "someone-else"}).
    userinfo_claims: dict[str, Any] = field(default_factory=dict)


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied; a DELETE value removes the key."""
    result = dict(base)
    for key, value in overrides.items():
        if value is DELETE:
            result.pop(key, None)
        else:
            result[key] = value
    return result
