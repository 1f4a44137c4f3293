"""Everything the app owns, built once from config; handlers read `request.app[STATE]`."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .authorize import Policy
from .config import Config
from .headers import Network
from .oidc.client import EntraClient
from .routes import Route, RouteTable
from .session.cookies import CookieSpec
from .session.login_state import LoginStates
from .session.store import SessionStore


@dataclass(frozen=True, slots=True)
class State:
    config: Config
    entra: EntraClient
    sessions: SessionStore
    logins: LoginStates
    routes: RouteTable
    upstream_http: aiohttp.ClientSession
    owned_headers: frozenset[str]
    trusted: tuple[Network, ...]
    extra_claims: tuple[str, ...]
    policy: Policy  # the global [access] policy (routes may carry their own)


STATE = web.AppKey("state", State)

# Per-request values the middleware and handlers share.
REQUEST_ID = web.RequestKey("request_id", str)
USER = web.RequestKey("user", str)
ROUTE = web.RequestKey("route", Route)
COOKIES = web.RequestKey("cookies", list[CookieSpec])  # applied to whatever response goes out
