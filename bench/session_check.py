"""Micro-benchmark of the per-request session check with the cookie store: decode and verify
the signed session cookie (CookieStore.load_identity) and build the identity headers
(proxy.header_budget.fit_identity_headers, at the default limits), in microseconds per
request.

The cookie is the one a real sign-in of the mock's alice@contoso.example writes: her
identity claims (two groups, one role) signed with the session secret, default header map.

    python -m bench.session_check [--iterations 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from dataclasses import dataclass

from proxy.config_load import from_dict
from proxy.header_budget import fit_identity_headers
from proxy.identity import Identity
from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID
from proxy.mock_entra.users import ADMINS_GROUP_ID, ENGINEERING_GROUP_ID
from proxy.session.cookie_store import CookieStore
from proxy.session.store import Session

ALICE = Identity(
    oid="a11ce000-0000-4000-8000-000000000001",
    tid=DEFAULT_TENANT_ID,
    sub="9f3c1e0b7a5d4f2e8c6b4a29d7e5f3c1b0a9e8d7c6b",
    name="Alice Admin",
    preferred_username="alice@contoso.example",
    email="alice@contoso.example",
    groups=(ADMINS_GROUP_ID, ENGINEERING_GROUP_ID),
    roles=("Admin",),
    sid="00a1b2c3-d4e5-4f60-8a7b-9c0d1e2f3a4b",
)


@dataclass(frozen=True)
class SessionCheckResult:
    iterations: int
    best_us: float  # best of the repeats, microseconds per check
    median_us: float
    cookie_bytes: int
    headers: int


def _setup() -> tuple[CookieStore, dict[str, str], dict[str, str]]:
    config = from_dict({
        "server": {"listen": "127.0.0.1:4180", "public_url": "http://127.0.0.1:4180"},
        "azure": {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
                  "tenant_id": DEFAULT_TENANT_ID},
        "session": {"secret": secrets.token_urlsafe(32), "secure": False},
        "upstreams": [{"path": "/", "url": "http://127.0.0.1:8080"}],
    })
    store = CookieStore(config.session, config.azure.client_id)
    specs = asyncio.run(store.save(Session(ALICE), {}))
    cookies = {spec.name: spec.value for spec in specs if spec.value}
    return store, cookies, dict(config.identity.headers)


def measure(iterations: int = 20_000, repeat: int = 5) -> SessionCheckResult:
    store, cookies, mapping = _setup()
    identity = store.load_identity(cookies)
    if identity != ALICE:
        raise AssertionError(f"the cookie did not round-trip: {identity!r}")
    def build(identity: Identity, mapping: dict[str, str]) -> list[tuple[str, str]]:
        return fit_identity_headers(identity, mapping, limit=4096, budget=16384).pairs

    headers = build(identity, mapping)
    load = store.load_identity
    timings = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            found = load(cookies)
            assert found is not None
            build(found, mapping)
        timings.append((time.perf_counter_ns() - start) / iterations / 1000)
    timings.sort()
    return SessionCheckResult(iterations, timings[0], timings[len(timings) // 2],
                              sum(len(v) for v in cookies.values()), len(headers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    r = measure(args.iterations, args.repeat)
    if args.json:
        print(json.dumps(r.__dict__))
        return
    print(f"session check (cookie {r.cookie_bytes} B, {r.headers} identity headers): "
          f"{r.best_us:.1f} µs/op best, {r.median_us:.1f} µs/op median "
          f"of {args.repeat} x {r.iterations}")


if __name__ == "__main__":
    main()
