"""proxy.toml as frozen, typed dataclasses. Shape lives here; `config_load` reads and checks it."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Any

from yarl import URL

# Seconds; written in proxy.toml as "90s", "15m", "8h", "7d". The marker lets the loader's
# parser table tell a duration from a plain float (proxy/config_values.py).
Duration = Annotated[float, "duration"]

CLIENT_CREDENTIALS = ("secret", "certificate", "workload_identity", "managed_identity")
IMDS_URL = "http://169.254.169.254/metadata/identity/oauth2/token"
TENANT_ALIASES = ("organizations", "common", "consumers")
CONSUMERS_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
DEFAULT_HEADERS: Mapping[str, str] = MappingProxyType({
    "X-Forwarded-User": "preferred_username",
    "X-Forwarded-Email": "email",
    "X-Forwarded-Name": "name",
    "X-Forwarded-Groups": "groups",
    "X-Forwarded-Roles": "roles",
    "X-Forwarded-Object-Id": "oid",
    "X-Forwarded-Tenant-Id": "tid",
})


class Secret:
    """A string that never shows itself in a repr, a log line or check-config output."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "0.0.0.0:4180"
    public_url: str = ""
    trusted_proxies: tuple[str, ...] = ()
    workers: int = 1
    metrics_listen: str = ""
    # Bearer token the admin endpoints on metrics_listen require (empty: loopback peers only)
    admin_token: Secret = field(default_factory=lambda: Secret(""))
    log_format: str = "text"
    log_level: str = "info"
    access_log: bool = True
    server_header: str = "azure-auth-proxy"  # no version: it tells an attacker nothing
    allowed_redirect_hosts: tuple[str, ...] = ()
    drain_timeout: Duration = 30.0  # on SIGTERM: how long in-flight requests may finish
    # Slow or idle clients (nginx: client_header_timeout, keepalive_timeout, worker_connections)
    header_timeout: Duration = 20.0  # a connection's first request head must arrive within this
    keepalive_timeout: Duration = 75.0  # an idle keep-alive connection is closed after this
    max_connections: int = 10000  # open client connections per process; more are refused
    worker_stuck_timeout: Duration = 30.0  # workers > 1: replace a worker whose loop is this quiet
    # TLS on the listener (proxy/server_tls.py): PEM full chain and its key, both or neither
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_watch_interval: Duration = 5.0  # poll both files this often, reload on change; 0: off
    http_redirect_listen: str = ""  # plain HTTP listener answering 308 to https (TLS only)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file or self.tls_key_file)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def origin(self) -> URL:
        return URL(self.public_url).origin()

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in self.trusted_proxies)


@dataclass(frozen=True, slots=True)
class AzureConfig:
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    tenant_id: str = "organizations"
    cloud_instance: str = "https://login.microsoftonline.com/"
    connector_id: str = "azuread"
    scopes: tuple[str, ...] = ("openid", "profile", "email", "offline_access", "User.Read")
    allowed_tenants: tuple[str, ...] = ()
    allow_any_tenant: bool = False
    prompt: str = ""
    domain_hint: str = ""
    graph_url: str = ""
    federated_logout: bool = False
    timeout: Duration = 10.0
    client_certificate_file: str = ""  # PEM certificate: private_key_jwt instead of a secret
    client_private_key_file: str = ""  # PEM private key of that certificate
    # How the app authenticates to the token endpoint: "" infers "certificate" (when
    # client_certificate_file is set) or "secret"; or "workload_identity", "managed_identity".
    client_credential: str = ""
    federated_token_file: str = ""  # workload_identity; env AZURE_FEDERATED_TOKEN_FILE
    managed_identity_client_id: str = ""  # a user-assigned identity; "" = system-assigned
    # The managed identity endpoint: IMDS, or App Service's IDENTITY_ENDPOINT with
    # identity_header (env IDENTITY_HEADER), which selects App Service's form.
    imds_url: str = IMDS_URL
    identity_header: Secret = field(default_factory=lambda: Secret(""))
    # Claims mapping: Entra signs this app's tokens with its own key, at jwks_uri?appid=...
    app_signing_keys: bool = False
    # The API whose access token upstreams with pass_authorization_header get, e.g.
    # ["api://<app-id>/.default"]: scopes of one resource (Entra: one token per resource).
    upstream_scopes: tuple[str, ...] = ()

    @property
    def authority(self) -> str:
        # MSAL's AuthorityBuilder: cloud without trailing slash + "/" + tenant.
        return self.cloud_instance.rstrip("/") + "/" + self.tenant_id.strip("/")

    @property
    def multi_tenant(self) -> bool:
        return self.tenant_id.lower() in ("organizations", "common")


@dataclass(frozen=True, slots=True)
class SessionConfig:
    secret: Secret = field(default_factory=lambda: Secret(""))
    secrets: tuple[Secret, ...] = ()
    store: str = "cookie"
    redis_url: Secret = field(default_factory=lambda: Secret("redis://127.0.0.1:6379/0"))
    redis_cluster: bool = False  # redis_url names one node of a Redis Cluster
    redis_sentinel_master: str = ""  # Sentinel: the master's name...
    redis_sentinels: tuple[str, ...] = ()  # ...and the sentinels' host:port addresses
    redis_sentinel_password: Secret = field(default_factory=lambda: Secret(""))
    redis_ca_file: str = ""  # CA bundle for rediss:// with a private CA
    memory_max_sessions: int = 100_000  # store = "memory": oldest sessions go first past this
    cookie_name: str = "azp_session"
    cookie_domain: str = ""
    secure: bool = True
    samesite: str = "lax"
    max_age: Duration = 8 * 3600.0
    idle_timeout: Duration = 0.0
    refresh: Duration = 300.0

    @property
    def signing_keys(self) -> list[str]:
        """Keys for itsdangerous, oldest first: `secrets` is written newest first."""
        if self.secrets:
            return [s.reveal() for s in reversed(self.secrets)]
        return [self.secret.reveal()]


@dataclass(frozen=True, slots=True)
class AccessPolicyConfig:
    emails: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    # Refuse B2B guests: needs Entra's `acct` optional claim (0 = member, 1 = guest).
    members_only: bool = False
    # App-only bearer tokens (client credentials: no user) may pass. Off by default: an app
    # is never let in, or passed on, as if it were a user.
    allow_apps: bool = False
    # Step-up (proxy/step_up.py): Conditional Access authentication contexts the sign-in
    # must satisfy (acrs), the longest time since the user authenticated (auth_time, sent
    # as max_age; 0: any), and multi-factor authentication (amr holds "mfa").
    auth_context: tuple[str, ...] = ()
    max_auth_age: Duration = 0.0
    require_mfa: bool = False


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    # Read-only view: a frozen dataclass holding a dict would still be mutable inside.
    headers: Mapping[str, str] = field(default_factory=lambda: DEFAULT_HEADERS)
    easy_auth: bool = False
    easy_auth_tokens: bool = False  # X-MS-TOKEN-AAD-* and tokens in /.auth/me (opt-in)
    assertion_header: str = "X-Auth-Assertion"
    assertion_key_file: str = ""  # PEM EC P-256 or RSA key; generated per process if empty
    pass_access_token: bool = False
    pass_id_token: bool = False
    # Use the `email` claim without Entra's `xms_edov` (domain verified): single tenant only.
    trust_unverified_email: bool = False
    # Stock upstreams refuse header lines past 8,190 bytes (aiohttp, gunicorn) or 8 KB
    # (nginx): no line the proxy adds is longer than this ("Name: value"), lists are split
    # over repeated lines, and all identity lines together stay within the total
    # (header_budget.py; a list that does not fit is left out and marked <Header>-Overflow).
    max_header_bytes: int = 4096
    max_total_header_bytes: int = 16384
    # Which groups go to upstreams: group ids, "re:<pattern>", "policy" (the groups access
    # policies name). Empty: all. Policies always see every group.
    groups_filter: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApiConfig:
    accept_bearer: bool = False
    audiences: tuple[str, ...] = ()  # App ID URIs; azure.client_id (the GUID) is implied
    # Entra issues tokens for a tenant's APIs to any app in it: only these callers
    # (the token's azp/appid) count, like App Service's allowed client applications.
    allowed_client_ids: tuple[str, ...] = ()
    required_scopes: tuple[str, ...] = ()  # a user's token needs one of these in `scp`
    required_app_roles: tuple[str, ...] = ()  # an app's token needs one of these in `roles`


@dataclass(frozen=True, slots=True)
class UiConfig:
    """The proxy's own pages (sign-in, errors, 403, signed out): plain HTML, no external assets."""

    title: str = "azure-auth-proxy"  # product name shown on every page
    logo_url: str = ""  # optional image (https:// or a path served by an upstream)
    footer: str = ""  # e.g. "Contact the IT service desk"
    skip_provider_button: bool = True  # false: show a sign-in page instead of redirecting


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str = ""
    path: str = "/"
    host: str = ""
    public: tuple[str, ...] = ()
    preserve_host: bool = False
    strip_prefix: bool = False
    case_sensitive: bool = False  # path prefix compared case-sensitively (default: any case)
    timeout: Duration = 60.0
    assertion_audience: str = ""  # the assertion's `aud` for this route; "" = derived
    connect_timeout: Duration = 10.0
    max_connections: int = 512  # open connections to this upstream's origin, idle or busy
    ca_file: str = ""  # https only: trust this CA (PEM) instead of the system's
    client_cert_file: str = ""  # mTLS: the certificate (and key, unless client_key_file)
    client_key_file: str = ""
    server_name: str = ""  # the name verified and sent as SNI (default: the URL's host)
    tls_insecure_skip_verify: bool = False  # never implied; logged loudly at every start
    # Authorization: Bearer <the user's access token for azure.upstream_scopes>; the
    # client's own Authorization header is replaced (server-side session stores only).
    pass_authorization_header: bool = False
    access: AccessPolicyConfig | None = None


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    azure: AzureConfig = field(default_factory=AzureConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    access: AccessPolicyConfig = field(default_factory=AccessPolicyConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    upstreams: tuple[UpstreamConfig, ...] = ()

    @property
    def redirect_uri(self) -> str:
        return f"{self.server.public_url.rstrip('/')}/callback/{self.azure.connector_id}"

    @property
    def policy_groups(self) -> frozenset[str]:
        """Every group an access policy names (identity.groups_filter "policy")."""
        policies = [self.access, *(u.access for u in self.upstreams if u.access is not None)]
        return frozenset(g for policy in policies for g in policy.groups)


SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "azure": AzureConfig,
    "session": SessionConfig,
    "access": AccessPolicyConfig,
    "identity": IdentityConfig,
    "api": ApiConfig,
    "ui": UiConfig,
}
