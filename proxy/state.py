"""Everything the app owns, built from config; handlers call `get_state(request)`.

The State is immutable; the app holds it in one cell so that SIGHUP can swap in a State
built from a new config between requests, without dropping connections or sessions.
"""

from __future__ import annotations

import itertools
import os
import weakref
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .assertion import AssertionSigner
from .authorize import Policy
from .config import Config
from .headers import Network, own_cookies
from .identity import ClaimRules
from .metrics import Metrics
from .oidc.client import EntraClient
from .oidc.tokens import SessionBinding
from .routes import Route, RouteTable
from .session.cookies import CookieSpec
from .session.login_state import LoginStates
from .session.store import SessionStore
from .upstream_client import UpstreamPool
from .upstream_identity import IdentityHeaders


@dataclass(frozen=True, slots=True)
class State:
    config: Config
    entra: EntraClient
    sessions: SessionStore
    logins: LoginStates
    routes: RouteTable
    upstream_http: aiohttp.ClientSession  # WebSockets
    upstream_pool: UpstreamPool  # everything else
    owned_headers: frozenset[str]
    trusted: tuple[Network, ...]
    claim_rules: ClaimRules
    policy: Policy  # the global [access] policy (routes may carry their own)
    signer: AssertionSigner | None  # the identity assertion ([identity] assertion_header)
    upstream_identity: IdentityHeaders  # what the upstream learns about the user
    binding: SessionBinding  # is a stored session one this config would issue? (remembered)
    scheme: str  # public_url's ("http" or "https"): parsed once, read on every request


class StateCell:
    __slots__ = ("current", "websockets", "inflight", "_id_prefix", "_ids")

    def __init__(self, state: State) -> None:
        self.current = state
        self.inflight = 0  # requests being handled: SIGTERM waits for this to reach 0
        # Open client WebSockets, closed with 1001 (going away) when the proxy shuts down.
        self.websockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._id_prefix = os.urandom(8).hex()  # per process (workers are spawned, not forked)
        self._ids = itertools.count()

    def new_request_id(self) -> str:
        """32 hex digits, unique across processes and restarts; unlike uuid4 it costs no
        getrandom() system call per request (request ids are labels, not secrets)."""
        return f"{self._id_prefix}{next(self._ids):016x}"


STATE = web.AppKey("state", StateCell)
METRICS = web.AppKey("metrics", Metrics)  # outlives reloads: counters never reset


def get_state(request: web.Request) -> State:
    return request.app[STATE].current


def session_cookies(request: web.Request) -> dict[str, str]:
    """The proxy's own cookies of this request, read the same way on every path (the first
    of duplicated names wins), so a page and /oauth2/userinfo never see two identities."""
    return own_cookies(request.headers, get_state(request).sessions.name)


class Exchange:
    """What the handlers learn about one request, for its answer and its access line. One
    object under one request key: aiohttp's request keys are written through a Python
    method (about 1,100 instructions a write, callgrind), attributes are not."""

    __slots__ = ("state", "cookies", "route", "authority", "user", "tenant",
                 "upstream_status", "upstream_time")

    def __init__(self, state: State) -> None:
        # The app's State when the request came in (get_state's answer, without its three
        # Python calls through request.app: the gateway and forward auth read it here).
        self.state = state
        self.cookies: list[CookieSpec] = []  # applied to whatever response goes out
        self.route: Route | None = None
        # The request's Host, normalized (request_target.py): what X-Forwarded-Host and a
        # preserved Host carry, never the client's spelling of it.
        self.authority: str | None = None
        self.user: str | None = None
        self.tenant: str | None = None  # the signed-in user's tid, for the access line
        # What the upstream answered and how long it took to (its response head, seconds).
        self.upstream_status: int | None = None
        self.upstream_time: float | None = None


# Per-request values the middleware and handlers share.
REQUEST_ID = web.RequestKey("request_id", str)
EXCHANGE = web.RequestKey("exchange", Exchange)
