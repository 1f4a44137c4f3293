"""A local Microsoft Entra ID (v2.0 endpoints + a Graph subset) for tests and the demo.

Imports nothing from the rest of `proxy`. Serve a MockEntra with create_app or run_mock;
flip its `faults`, `auto_user` and keys between requests.
"""

from __future__ import annotations

from .app import create_app, run_mock
from .faults import DELETE, Faults
from .state import MockEntra
from .users import (
    CALLER_CLIENT_ID,
    CALLER_CLIENT_SECRET,
    CONSUMERS_TENANT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_ID,
    OTHER_TENANT_ID,
    STRANGER_CLIENT_ID,
    STRANGER_CLIENT_SECRET,
    MockClient,
    MockUser,
)

__all__ = [
    "CALLER_CLIENT_ID",
    "CALLER_CLIENT_SECRET",
    "CONSUMERS_TENANT_ID",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_TENANT_ID",
    "DELETE",
    "OTHER_TENANT_ID",
    "STRANGER_CLIENT_ID",
    "STRANGER_CLIENT_SECRET",
    "Faults",
    "MockClient",
    "MockEntra",
    "MockUser",
    "create_app",
    "run_mock",
]
