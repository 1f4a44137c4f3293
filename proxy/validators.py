"""Value checks shared by the config validator and the runtime (the OIDC code checks tenant
ids with the same `is_guid`): a base module, so runtime code never imports config_check."""

from __future__ import annotations

import ipaddress
import re
import uuid

# A DNS name with at least two labels and an alphabetic top-level label (no IP literals).
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
