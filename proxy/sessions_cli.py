"""`azure-auth-proxy sessions list|revoke`: offboarding from the command line.

Connects to the configured Redis store (the one every replica shares), lists sessions (user,
oid, tenant, created, last seen, expiry; only the first characters of a session id) or ends
them: each revoked session's next request, on every replica, finds no session and signs in
again. The cookie store keeps sessions in browsers and the memory store inside one proxy
process: neither can be reached from here (exit 1, saying why).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TextIO

from .config import Config
from .errors import StoreUnavailable
from .session.factory import build_store
from .session.server_store import ServerSideStore
from .session.store import SessionInfo

COOKIE_STORE = ("sessions: the cookie store keeps each session in the user's browser, so it "
                "cannot be listed or revoked; revocation needs a server-side store "
                "([session] store = \"redis\"). Rotating [session] secret ends every session.")
MEMORY_STORE = ("sessions: the memory store lives inside one proxy process; administer it "
                "through that process's admin listener ([server] metrics_listen: "
                "GET /admin/sessions, POST /admin/sessions/revoke).")
COLUMNS = ("ID PREFIX", "USER", "OID", "TENANT", "CREATED", "LAST SEEN", "EXPIRES")


def run(config: Config, action: str, user: str, oid: str, everyone: bool, as_json: bool,
        out: TextIO | None = None) -> int:
    """Exit status: 0 done, 1 the store cannot be administered from here or is down."""
    out = out or sys.stdout
    store_kind = config.session.store
    if store_kind != "redis":
        print(COOKIE_STORE if store_kind == "cookie" else MEMORY_STORE, file=sys.stderr)
        return 1
    try:
        result = asyncio.run(_act(config, action, user, oid, everyone))
    except StoreUnavailable as exc:
        print(f"sessions: {exc.public}", file=sys.stderr)
        return 1
    if isinstance(result, int):
        _revoked(result, user, oid, as_json, out)
    elif as_json:
        print(json.dumps({"sessions": [info.to_dict() for info in result]}, indent=2), file=out)
    else:
        print(table(result), file=out)
    return 0


async def _act(config: Config, action: str, user: str, oid: str,
               everyone: bool) -> int | list[SessionInfo]:
    store = build_store(config.session, app=config.azure.client_id)
    assert isinstance(store, ServerSideStore)  # store = "redis"
    try:
        if action == "revoke":
            return await store.revoke(user=user, oid=oid, everyone=everyone)
        return await store.sessions(user=user, oid=oid)
    finally:
        await store.close()


def _revoked(count: int, user: str, oid: str, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps({"revoked": count}), file=out)
        return
    whose = f" of {user}" if user else f" of oid {oid}" if oid else ""
    print(f"revoked {count} session{'' if count == 1 else 's'}{whose}", file=out)


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def _printable(text: str) -> str:
    """A claim as a terminal may show it: no control characters (escape sequences)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def table(found: list[SessionInfo]) -> str:
    """Aligned columns, one session a line, oldest first; the count at the end."""
    rows = [COLUMNS, *((info.id_prefix, _printable(info.user), _printable(info.oid),
                        _printable(info.tid), _when(info.created), _when(info.last_seen),
                        _when(info.expires)) for info in found)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join([*lines, f"{len(found)} session{'' if len(found) == 1 else 's'}"])
