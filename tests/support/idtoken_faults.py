"""ID token faults, as the OIDF RP suite's OP applies them: each is a function that sets the
mock Entra ID's `faults` for one sign-in. Shared by tests/flows/test_login_security.py and
tests/conformance/test_oidcc_rp.py (the same faults, judged two ways)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from proxy.mock_entra import DEFAULT_TENANT_ID
from tests.conftest import Stack

Fault = Callable[[Stack], None]


def claims(**overrides: Callable[[Stack], Any] | Any) -> Fault:
    """Override ID token claims; a callable value is computed from the stack at run time."""
    def apply(stack: Stack) -> None:
        stack.mock.faults.id_token_claims = {
            k: v(stack) if callable(v) else v for k, v in overrides.items()}
    return apply


def sign(mode: str) -> Fault:
    def apply(stack: Stack) -> None:
        stack.mock.faults.sign = mode
    return apply


def header(**overrides: Any) -> Fault:
    def apply(stack: Stack) -> None:
        stack.mock.faults.id_token_header = overrides
    return apply


def access_token_as_id_token(stack: Stack) -> None:
    stack.mock.faults.access_token_as_id_token = True


def issuer(stack: Stack, tenant: str = DEFAULT_TENANT_ID) -> str:
    """The stack's mock Entra ID's issuer for `tenant` (default: the one the proxy expects)."""
    return f"{stack.idp}/{tenant}/v2.0"


def from_tenant(tenant: str) -> Fault:
    """A token of another tenant, consistent in itself: `tid` and `iss` both name it."""
    return claims(tid=tenant, iss=lambda stack: issuer(stack, tenant))


def hours(n: float) -> Callable[[Stack], int]:
    """A claim value `n` hours from the moment the fault is applied (negative: past)."""
    return lambda _stack: int(time.time() + n * 3600)
