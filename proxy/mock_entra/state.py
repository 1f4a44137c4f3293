"""MockEntra: all mutable mock state, owned by the aiohttp Application under MOCK."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from .authentication import Authentication
from .faults import Faults
from .federation import ExternalIssuer
from .keys import KeyRing
from .tenants import Tenant, resolve_tenant
from .users import DEFAULT_DOMAINS, MockClient, MockUser, default_clients, default_users

# Entra's authorization codes live about ten minutes (ENTRA.md §5).
CODE_LIFETIME_SECONDS: Final = 600
# Authority hosts that serve a cloud under another name: the endpoints they list stay on the
# alias, but the issuer names the cloud's canonical host (MSAL's instance metadata, and
# learn.microsoft.com "National clouds").
HOST_ALIASES: Final = {
    "login.windows.net": "login.microsoftonline.com",
    "login.chinacloudapi.cn": "login.partner.microsoftonline.cn",
    "login.usgovcloudapi.net": "login.microsoftonline.us",
}


@dataclass(frozen=True)
class SignIn:
    """What a code or refresh token stands for: who signed in, to which app, how."""

    client_id: str
    username: str
    scopes: tuple[str, ...]
    tenant: str  # canonical tenant segment it was issued on
    sid: str
    nonce: str | None = None
    # The authentication behind it (auth_time, MFA), the authentication contexts it met,
    # and whether the request asked for auth_time (max_age: OIDC Core 3.1.2.1 requires it).
    auth: Authentication | None = None
    acrs: tuple[str, ...] = ()
    auth_time_requested: bool = False


@dataclass(frozen=True)
class CodeGrant:
    sign_in: SignIn
    redirect_uri: str | None  # as sent to authorize; the token request must repeat it
    code_challenge: str | None
    code_challenge_method: str
    expires_at: float


@dataclass(frozen=True)
class AccessGrant:
    """The record behind a Graph access token, keyed by its `uti`."""

    client_id: str
    username: str
    scopes: tuple[str, ...]
    expires_at: float


class MockEntra:
    """All mutable mock state. create_app(mock) serves it."""

    def __init__(
        self,
        users: list[MockUser] | None = None,
        clients: list[MockClient] | None = None,
        *,
        overage_limit: int = 200,
        domains: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = {u.username: u for u in (default_users() if users is None else users)}
        self.clients = {c.client_id: c for c in (default_clients() if clients is None else clients)}
        self.domains = dict(DEFAULT_DOMAINS if domains is None else domains)
        self.overage_limit = overage_limit
        self.clock = clock
        self.faults = Faults()
        # Host the mock is reached on -> host its issuers name (tests may add loopback pairs).
        self.host_aliases: dict[str, str] = dict(HOST_ALIASES)
        # username -> the groups Graph's eventually consistent index still lists (a change
        # not yet indexed): served to requests with `ConsistencyLevel: eventual` only.
        self.graph_index_lag: dict[str, list[str]] = {}
        self.auto_user: str | None = None
        # Seconds until issued access tokens expire (tests shorten it to force a refresh).
        self.access_token_lifetime = 3599
        # The host of v1 token issuers (https://{host}/{tid}/): the global cloud's by
        # default; tests set a national cloud's (sts.chinacloudapi.cn) to model one.
        self.sts_host = "sts.windows.net"
        self.issued: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, str]] = []
        # Issuers outside Entra whose tokens federated credentials may trust, by issuer URL.
        self.external_issuers: dict[str, ExternalIssuer] = {}
        self.client_assertions: list[str] = []  # every client_assertion presented, in order
        self.logouts: list[dict[str, str]] = []
        self.sessions: dict[str, str] = {}  # sid -> username
        # username -> the user's last authentication (auth_time, MFA): authentication.py
        self.authentications: dict[str, Authentication] = {}
        # Authentication contexts no user can satisfy here (left out of `acrs`), and whether
        # ID tokens carry `amr` (real v2.0 ones do not: authentication.py says why).
        self.unsatisfiable_contexts: set[str] = set()
        self.id_token_amr = False
        self.codes: dict[str, CodeGrant] = {}
        self.refresh_tokens: dict[str, SignIn] = {}
        self.access_tokens: dict[str, AccessGrant] = {}
        self._used_codes: set[str] = set()
        self._keys: KeyRing | None = None

    @property
    def keys(self) -> KeyRing:
        # RSA generation is slow: only mocks that actually sign pay for it.
        if self._keys is None:
            self._keys = KeyRing()
        return self._keys

    def trust_issuer(self, issuer: str) -> ExternalIssuer:
        """Make `issuer` one federated credentials may name (a new key each time)."""
        self.external_issuers[issuer] = ExternalIssuer(issuer)
        return self.external_issuers[issuer]

    def rotate_keys(self) -> None:
        """Publish a new key and sign with it; only the two newest stay published."""
        self.keys.rotate()

    @property
    def tenants(self) -> frozenset[str]:
        """Known tenant GUIDs: the users' tenants and those behind verified domains."""
        return frozenset(u.tid.lower() for u in self.users.values()) | frozenset(
            tid.lower() for tid in self.domains.values()
        )

    def resolve_tenant(self, segment: str) -> Tenant | None:
        return resolve_tenant(segment, self.tenants, self.domains)

    def users_for(self, tenant: Tenant) -> list[MockUser]:
        return [user for user in self.users.values() if tenant.allows(user)]

    def start_session(self, username: str) -> str:
        """A new Entra sign-in session; its id is the ID token's `sid`."""
        sid = str(uuid.uuid4())
        self.sessions[sid] = username
        return sid

    def end_session(self, sid: str) -> None:
        self.sessions.pop(sid, None)

    def issue_code(
        self,
        sign_in: SignIn,
        redirect_uri: str | None,
        code_challenge: str | None,
        code_challenge_method: str,
    ) -> str:
        code = "0.A" + secrets.token_urlsafe(48)
        self.codes[code] = CodeGrant(
            sign_in=sign_in,
            redirect_uri=redirect_uri,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            expires_at=self.clock() + CODE_LIFETIME_SECONDS,
        )
        return code

    def take_code(self, code: str) -> CodeGrant | None:
        """Remove and return a code: any redemption attempt burns it."""
        grant = self.codes.pop(code, None)
        if grant is not None:
            self._used_codes.add(code)
        return grant

    def code_was_used(self, code: str) -> bool:
        return code in self._used_codes

    def issue_refresh_token(self, sign_in: SignIn) -> str:
        token = "1.A" + secrets.token_urlsafe(64)
        self.refresh_tokens[token] = sign_in
        return token

    def revoke_refresh_tokens(self, username: str | None = None) -> None:
        """Revoke every refresh token (of `username`, if given): the next refresh fails."""
        for token, sign_in in list(self.refresh_tokens.items()):
            if username is None or sign_in.username == username:
                del self.refresh_tokens[token]


MOCK: Final = web.AppKey("mock_entra", MockEntra)


async def request_params(request: web.Request) -> dict[str, str]:
    """Query parameters, overlaid by form fields on POST (authorize and logout take both)."""
    params = dict(request.query)
    if request.method == "POST":
        form = await request.post()
        params.update({name: value for name, value in form.items() if isinstance(value, str)})
    return params


def origin(request: web.Request) -> str:
    """The mock has no fixed host: every URL it emits starts with the request's origin."""
    return str(request.url.origin())


def issuer_base(request: web.Request) -> str:
    """The origin issuers name: an alias host's canonical host, else the request's origin."""
    url = request.url.origin()
    canonical = request.app[MOCK].host_aliases.get((url.host or "").lower())
    return str(url.with_host(canonical)) if canonical else str(url)
