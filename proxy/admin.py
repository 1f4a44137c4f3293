"""Session administration on the metrics listener (`[server] metrics_listen`), for offboarding:
`GET /admin/sessions?user=|oid=` lists server-side sessions, `POST /admin/sessions/revoke`
(user, oid or all=true; JSON body, form or query) ends them on every replica sharing the store.

Who may: with `[server] admin_token` set, every caller (loopback too) sends it as
`Authorization: Bearer <token>`, compared in constant time; without one, only loopback peers
(the TCP peer: a forwarded header is never believed here). Every refusal and every revocation
is logged with its request id; a session shows only the first characters of its id.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from . import logs
from .errors import StoreUnavailable
from .pages import NO_STORE
from .session.server_store import ServerSideStore
from .state import StateCell

log = logging.getLogger("proxy.admin")
MAX_BODY = 4096  # bytes of a revoke request's body
MAX_FILTER = 256  # characters of a user or oid filter
REALM = 'Bearer realm="azure-auth-proxy admin"'
_FORWARDED = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Host")
AdminHandler = Callable[[web.Request, ServerSideStore, str], Awaitable[web.Response]]


class Refused(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def is_loopback_peer(peer: str | None) -> bool:
    """Whether a TCP peer address is a loopback one (IPv4-mapped IPv6 included). Anything
    else, a host name or an unparsable string included, is not."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def token_matches(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, the token compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip() or not token:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback: `localhost` or a loopback
    address, with or without a port. A DNS name that resolves to 127.0.0.1 is not."""
    name = host.strip().lower()
    if name.startswith("["):
        name, closed, port = name[1:].partition("]")
        if not closed or port[:1] not in ("", ":"):
            return False
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    return name == "localhost" or is_loopback_peer(name)


def from_a_web_page(headers: Mapping[str, str]) -> bool:
    """Whether a browser sent this on behalf of a page: it names its Origin (every POST,
    every cross-origin fetch) or a Sec-Fetch-Site other than "none" (typed by the user)."""
    return "Origin" in headers or headers.get("Sec-Fetch-Site", "none").lower() != "none"


def check_caller(request: web.Request, token: str) -> None:
    """Raise Refused unless the caller may administer sessions. A web page never may: any
    site a browser on the proxy's host opens could otherwise post a form to the loopback
    listener (cross-site request forgery) or, its name rebound to 127.0.0.1, read it."""
    if from_a_web_page(request.headers):
        raise Refused(403, "from-web-page", "The admin endpoints take requests from scripts "
                      "and the CLI, not from web pages.")
    if token:
        if "Authorization" not in request.headers:
            raise Refused(401, "unauthenticated", "Send Authorization: Bearer <admin_token>.")
        if not token_matches(request.headers.get("Authorization"), token):
            raise Refused(401, "unauthenticated", "The admin token is not valid.")
        return
    if not is_loopback_peer(request.remote):
        raise Refused(403, "forbidden", "Only loopback callers may administer sessions "
                      "unless [server] admin_token is set.")
    if any(name in request.headers for name in _FORWARDED):
        # A reverse proxy on the same host makes every caller a loopback peer.
        raise Refused(403, "forwarded", "A forwarded request is not a loopback caller: set "
                      "[server] admin_token to administer sessions through a proxy.")
    host = request.headers.get("Host")
    if host is not None and not is_loopback_host(host):
        # A browser whose page's host name was rebound to 127.0.0.1 sends that name.
        raise Refused(403, "host-not-loopback", "Without [server] admin_token, address the "
                      "listener as localhost or by its loopback address.")


def _filter(values: Mapping[str, Any], revoking: bool) -> tuple[str, str, bool]:
    """(user, oid, everyone) from a request: exactly one for a revocation, at most one for
    a listing; nothing else accepted."""
    unknown = set(values) - {"user", "oid", "all"}
    if unknown:
        raise Refused(400, "bad_request", f"Unknown parameter {sorted(unknown)[0][:32]!r}.")
    user, oid = values.get("user", ""), values.get("oid", "")
    everyone = values.get("all", False)
    if not isinstance(user, str) or not isinstance(oid, str):
        raise Refused(400, "bad_request", "user and oid must be strings.")
    everyone = everyone is True or (isinstance(everyone, str) and everyone.lower() == "true")
    if any(len(v) > MAX_FILTER or not v.isprintable() for v in (user, oid)):
        raise Refused(400, "bad_request", "user and oid must be printable, at most 256 "
                      "characters.")
    given = sum(map(bool, (user, oid, everyone)))
    if given > 1 or (revoking and given == 0) or (everyone and not revoking):
        raise Refused(400, "bad_request", "Give exactly one of user, oid or all=true."
                      if revoking else "Give at most one of user or oid.")
    return user, oid, everyone


def _described(user: str, oid: str, everyone: bool) -> str:
    return "all" if everyone else f"user:{user}" if user else f"oid:{oid}" if oid else "all"


async def list_sessions(request: web.Request, store: ServerSideStore,
                        request_id: str) -> web.Response:
    user, oid, _ = _filter(_once(request.query.items()), revoking=False)
    found = await store.sessions(user=user, oid=oid)
    log.info("sessions listed", extra=logs.fields(
        request_id=request_id, peer=request.remote, filter=_described(user, oid, False),
        count=len(found)))
    return _json(200, {"sessions": [info.to_dict() for info in found],
                       "request_id": request_id}, request_id)


async def revoke_sessions(request: web.Request, store: ServerSideStore,
                          request_id: str) -> web.Response:
    pairs = list(request.query.items())
    if request.can_read_body:
        pairs += _body(await _read(request), request.content_type)
    user, oid, everyone = _filter(_once(pairs), revoking=True)
    count = await store.revoke(user=user, oid=oid, everyone=everyone)
    log.warning("sessions revoked", extra=logs.fields(
        request_id=request_id, peer=request.remote, filter=_described(user, oid, everyone),
        count=count))
    return _json(200, {"revoked": count, "request_id": request_id}, request_id)


async def _read(request: web.Request) -> bytes:
    """The whole body, refused past MAX_BODY bytes (a read returns what has arrived, so it
    is read until the end: a body cut short is never taken for the whole)."""
    body = bytearray()
    while chunk := await request.content.read(MAX_BODY + 1 - len(body)):
        body += chunk
        if len(body) > MAX_BODY:
            raise Refused(413, "too_large", f"The body may hold at most {MAX_BODY} bytes.")
    return bytes(body)


def _body(body: bytes, content_type: str) -> list[tuple[str, Any]]:
    try:
        if content_type != "application/json":
            return parse_qsl(body.decode(), strict_parsing=bool(body), errors="strict")
        parsed = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # JSON nested past the parser's limit too
        raise Refused(400, "bad_request", "The body is not valid JSON or form data.") from None
    if not isinstance(parsed, dict):
        raise Refused(400, "bad_request", "The body must be a JSON object.")
    return list(parsed.items())


def _once(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The parameters, each given once (query and body together): `?user=a&user=b`, or one
    user in the query and another in the body, is ambiguous and refused."""
    values: dict[str, Any] = {}
    for key, value in pairs:
        if key in values:
            raise Refused(400, "bad_request", f"Parameter {key[:32]!r} given twice.")
        values[key] = value
    return values


def _json(status: int, body: dict[str, Any], request_id: str,
          headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers={**NO_STORE, "X-Request-Id": request_id, **(headers or {})})


def _guarded(cell: StateCell, handler: AdminHandler) -> Callable[[web.Request],
                                                                  Awaitable[web.Response]]:
    async def guarded(request: web.Request) -> web.Response:
        request_id = cell.new_request_id()
        state = cell.current  # read per request: a reload may change the token or store
        try:
            check_caller(request, state.config.server.admin_token.reveal())
            store = state.sessions
            if not isinstance(store, ServerSideStore):
                raise Refused(409, "not_server_side", "The cookie store keeps sessions in "
                              "browsers: revocation needs a server-side store "
                              "([session] store = \"redis\").")
            return await handler(request, store, request_id)
        except Refused as refused:
            log.warning("admin request refused", extra=logs.fields(
                request_id=request_id, peer=request.remote, path=request.path,
                reason=refused.error))
            challenge = {"WWW-Authenticate": REALM} if refused.status == 401 else None
            return _json(refused.status, {"error": refused.error, "message": refused.message,
                                          "request_id": request_id}, request_id, challenge)
        except StoreUnavailable as exc:
            log.error("admin request failed", extra=logs.fields(
                request_id=request_id, reason="store-unavailable"))
            return _json(503, {"error": "store_unavailable", "message": exc.public,
                               "request_id": request_id}, request_id)
    return guarded


def routes(cell: StateCell) -> list[web.RouteDef]:
    """The admin endpoints, for the metrics listener. Revocation is POST only: a link or an
    image (GET) can never end sessions."""
    return [web.get("/admin/sessions", _guarded(cell, list_sessions), allow_head=False),
            web.post("/admin/sessions/revoke", _guarded(cell, revoke_sessions))]
