"""Semantic checks of a typed Config: one "key: problem, what is allowed" line per problem."""

from __future__ import annotations

import ipaddress
import os
import re
import uuid
import warnings

from yarl import URL

from .config import TENANT_ALIASES, AccessPolicyConfig, Config, SessionConfig, UpstreamConfig

_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RESERVED_HEADERS = {
    "host", "cookie", "authorization", "connection", "upgrade", "content-length",
    "transfer-encoding", "te", "trailer", "keep-alive", "proxy-authorization",
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
}
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


def _url_problem(value: str, *, allow_path: bool) -> str | None:
    try:
        url = URL(value)
    except (ValueError, TypeError):
        return "is not a URL"
    if url.scheme not in ("http", "https") or not url.host:
        return "must be an absolute http(s) URL"
    if url.scheme == "http" and not is_loopback_host(url.host):
        return "must use https (plain http is allowed only for loopback hosts)"
    if not allow_path and url.path not in ("", "/"):
        return "must be an origin without a path"
    if url.query_string or url.fragment or url.user:
        return "must not carry a query, fragment or credentials"
    return None


def check_server(config: Config) -> list[str]:
    s = config.server
    out: list[str] = []
    host, _, port = s.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        out.append(f"server.listen: {s.listen!r} must be host:port, e.g. \"0.0.0.0:4180\"")
    if not s.public_url:
        out.append("server.public_url: required (the external origin, e.g. https://tools.example.com)")
    elif problem := _url_problem(s.public_url, allow_path=False):
        out.append(f"server.public_url: {s.public_url!r} {problem}")
    for cidr in s.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            out.append(f"server.trusted_proxies: {cidr!r} is not an IP address or CIDR")
    if not 1 <= s.workers <= 64:
        out.append(f"server.workers: {s.workers} must be between 1 and 64")
    elif s.workers > 1 and s.listen.endswith(":0"):
        out.append("server.workers: several workers need a fixed port in server.listen")
    if s.metrics_listen:
        m_host, _, m_port = s.metrics_listen.rpartition(":")
        if not m_host or not m_port.isdigit() or not 0 < int(m_port) <= 65535:
            out.append(f"server.metrics_listen: {s.metrics_listen!r} must be host:port, "
                       "e.g. \"127.0.0.1:9090\"")
        elif s.metrics_listen == s.listen:
            out.append("server.metrics_listen: must differ from server.listen (metrics are "
                       "never served on the public port)")
    if s.log_format not in ("text", "json"):
        out.append(f"server.log_format: {s.log_format!r} must be one of ['text', 'json']")
    if s.log_level.lower() not in ("debug", "info", "warning", "error"):
        out.append(f"server.log_level: {s.log_level!r} must be one of "
                   "['debug', 'info', 'warning', 'error']")
    for h in s.allowed_redirect_hosts:
        if not _DOMAIN.match(h.removeprefix("*.").removeprefix(".")) and not is_loopback_host(h):
            out.append(f"server.allowed_redirect_hosts: {h!r} must be a host name or *.domain")
    return out


def check_azure(config: Config) -> list[str]:
    a = config.azure
    out: list[str] = []
    if not a.client_id:
        out.append("azure.client_id: required (the app registration's Application (client) ID)")
    if bool(a.client_certificate_file) != bool(a.client_private_key_file):
        out.append("azure.client_certificate_file: set together with "
                   "azure.client_private_key_file (the certificate's private key)")
    if not a.client_secret and not a.client_certificate_file:
        out.append("azure.client_secret: required (or azure.client_secret_file, "
                   "or env PROXY_AZURE_CLIENT_SECRET)")
    tenant = a.tenant_id.lower()
    if tenant not in TENANT_ALIASES and not is_guid(tenant) and not _DOMAIN.match(tenant):
        out.append(f"azure.tenant_id: {a.tenant_id!r} must be a tenant GUID, a verified domain, "
                   "'organizations', 'common' or 'consumers'")
    if problem := _url_problem(a.cloud_instance, allow_path=False):
        out.append(f"azure.cloud_instance: {a.cloud_instance!r} {problem}")
    if not _COOKIE_NAME.match(a.connector_id):
        out.append(f"azure.connector_id: {a.connector_id!r} must be letters, digits, - or _")
    if "openid" not in a.scopes:
        out.append("azure.scopes: must include 'openid'")
    for t in a.allowed_tenants:
        if not is_guid(t):
            out.append(f"azure.allowed_tenants: {t!r} must be a tenant GUID")
    if a.multi_tenant and not a.allowed_tenants and not a.allow_any_tenant:
        out.append(f"azure.allowed_tenants: required when tenant_id = {a.tenant_id!r} "
                   "(list tenant GUIDs, or set allow_any_tenant = true to accept every tenant)")
    if a.graph_url and (problem := _url_problem(a.graph_url, allow_path=False)):
        out.append(f"azure.graph_url: {a.graph_url!r} {problem}")
    if a.timeout <= 0:
        out.append("azure.timeout: must be greater than 0")
    return out


def check_session(config: Config) -> list[str]:
    s = config.session
    out: list[str] = []
    if s.secret and s.secrets:
        out.append("session.secrets: set together with session.secret; use one")
    keys = list(s.secrets) or [s.secret]
    if not any(keys):
        out.append("session.secret: required (>= 32 random bytes; e.g. "
                   "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    elif any(len(k.reveal().encode()) < 32 for k in keys):
        out.append("session.secret: too short; use at least 32 random bytes")
    if s.store not in ("cookie", "memory", "redis"):
        out.append(f"session.store: {s.store!r} must be one of ['cookie', 'memory', 'redis']")
    if s.store == "memory" and config.server.workers > 1:
        out.append("session.store: 'memory' lives in one process, but server.workers > 1; "
                   "use 'redis'")
    if s.store == "redis":
        out += check_redis(s)
    if s.memory_max_sessions < 1:
        out.append("session.memory_max_sessions: must be at least 1")
    if s.refresh < 0:
        out.append("session.refresh: must not be negative")
    if not _COOKIE_NAME.match(s.cookie_name):
        out.append(f"session.cookie_name: {s.cookie_name!r} must be 1-64 letters, digits, - or _")
    if s.cookie_domain and not _DOMAIN.match(s.cookie_domain.lstrip(".")):
        out.append(f"session.cookie_domain: {s.cookie_domain!r} is not a domain name")
    elif s.cookie_domain and not _covers(s.cookie_domain, config.server.public_url):
        out.append(f"session.cookie_domain: {s.cookie_domain!r} does not cover "
                   "server.public_url's host, so browsers would drop the session cookie")
    if s.samesite not in ("lax", "strict", "none"):
        out.append(f"session.samesite: {s.samesite!r} must be one of ['lax', 'strict', 'none']")
    if s.samesite == "none" and not s.secure:
        out.append("session.samesite: 'none' requires session.secure = true")
    # A login cookie must survive the cross-site return from Entra, a top-level GET.
    if s.samesite == "strict":
        out.append("session.samesite: 'strict' breaks the return from Entra; use 'lax'")
    if s.secure and config.server.public_url.startswith("http://"):
        out.append("session.secure: true, but server.public_url is plain http, so browsers "
                   "would drop the cookie; set secure = false (loopback only)")
    if s.max_age <= 0:
        out.append("session.max_age: must be greater than 0")
    if s.idle_timeout and s.store == "cookie":
        out.append("session.idle_timeout: needs a server-side store (store = 'memory' or "
                   "'redis')")
    return out


def _covers(cookie_domain: str, public_url: str) -> bool:
    domain = cookie_domain.lstrip(".").lower()
    host = (URL(public_url).host or "").lower()
    return not host or host == domain or host.endswith("." + domain)


def check_redis(s: SessionConfig) -> list[str]:
    out: list[str] = []
    try:
        url = URL(s.redis_url.reveal())
        if url.scheme not in ("redis", "rediss") or not url.host:
            out.append("session.redis_url: must be redis://[user:password@]host:port/db "
                       "or rediss://... for TLS")
    except (ValueError, TypeError):
        out.append("session.redis_url: is not a URL")
    if bool(s.redis_sentinel_master) != bool(s.redis_sentinels):
        out.append("session.redis_sentinels: set together with session.redis_sentinel_master")
    if s.redis_sentinel_master and s.redis_cluster:
        out.append("session.redis_cluster: cannot be combined with Sentinel; choose one")
    for address in s.redis_sentinels:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            out.append(f"session.redis_sentinels: {address!r} must be host:port")
    if s.redis_ca_file and not os.path.isfile(s.redis_ca_file):
        out.append(f"session.redis_ca_file: {s.redis_ca_file!r} is not a readable file")
    return out


def check_policy(policy: AccessPolicyConfig, where: str) -> list[str]:
    out = [f"{where}.domains: {d!r} is not a domain name"
           for d in policy.domains if not _DOMAIN.match(d.lstrip("@"))]
    out += [f"{where}.tenants: {t!r} must be a tenant GUID" for t in policy.tenants
            if not is_guid(t)]
    out += [f"{where}.emails: {e!r} must contain exactly one @" for e in policy.emails
            if e.count("@") != 1]
    return out


def check_identity(config: Config) -> list[str]:
    i = config.identity
    out: list[str] = []
    for name, claim in i.headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            out.append(f"identity.headers: {name!r} cannot carry identity (not a header name, "
                       "or a header the proxy manages)")
        if not claim:
            out.append(f"identity.headers: {name!r} needs a claim name")
    for key in ("pass_access_token", "pass_id_token"):
        if getattr(i, key) and config.session.store == "cookie":
            out.append(f"identity.{key}: needs a server-side store (session.store = 'memory' "
                       "or 'redis'); the cookie store never holds tokens")
    if i.easy_auth_tokens and not i.easy_auth:
        out.append("identity.easy_auth_tokens: needs identity.easy_auth = true")
    if i.easy_auth_tokens and config.session.store == "cookie":
        out.append("identity.easy_auth_tokens: needs a server-side store (session.store = "
                   "'memory' or 'redis'); the cookie store never holds tokens")
    if i.assertion_header and (not _HEADER_NAME.match(i.assertion_header)
                               or i.assertion_header.lower() in _RESERVED_HEADERS):
        out.append(f"identity.assertion_header: {i.assertion_header!r} is not a usable "
                   "header name")
    if i.assertion_key_file and not os.path.isfile(i.assertion_key_file):
        out.append(f"identity.assertion_key_file: {i.assertion_key_file!r} is not a "
                   "readable file")
    if i.assertion_header and not i.assertion_key_file and config.server.workers > 1:
        out.append("identity.assertion_key_file: required with server.workers > 1, so every "
                   "process signs with the same key")
    if config.api.accept_bearer and not config.api.audiences:
        out.append("api.audiences: required with accept_bearer (e.g. "
                   f"[\"api://{config.azure.client_id or '<client_id>'}\"])")
    return out


def check_upstream(u: UpstreamConfig, where: str) -> list[str]:
    out: list[str] = []
    if not u.url:
        out.append(f"{where}.url: required (e.g. \"http://127.0.0.1:8080\")")
    else:
        try:
            url = URL(u.url)
            if url.scheme not in ("http", "https") or not url.host:
                out.append(f"{where}.url: {u.url!r} must be an absolute http(s) URL")
            elif url.query_string or url.fragment:
                out.append(f"{where}.url: {u.url!r} must not carry a query or fragment")
        except (ValueError, TypeError):
            out.append(f"{where}.url: {u.url!r} is not a URL")
    if not u.path.startswith("/"):
        out.append(f"{where}.path: {u.path!r} must start with /")
    if u.host and not _DOMAIN.match(u.host.removeprefix("*.")) and not is_loopback_host(u.host):
        out.append(f"{where}.host: {u.host!r} must be a host name or *.domain")
    for pattern in u.public:
        try:
            with warnings.catch_warnings():
                # Python warns where a regex's meaning will change: ambiguous, so refused.
                warnings.simplefilter("error", FutureWarning)
                re.compile(pattern)
        except (re.error, FutureWarning) as exc:
            out.append(f"{where}.public: {pattern!r} is not a valid regex ({exc})")
    if u.timeout <= 0:
        out.append(f"{where}.timeout: must be greater than 0")
    if u.access is not None:
        out += check_policy(u.access, f"{where}.access")
    return out


def check_ui(config: Config) -> list[str]:
    logo = config.ui.logo_url
    if logo and not (logo.startswith("https://") or (logo.startswith("/")
                                                     and not logo.startswith("//"))):
        return [f"ui.logo_url: {logo!r} must be an https:// URL or a path starting with /"]
    return []


def check(config: Config) -> list[str]:
    out = check_server(config) + check_azure(config) + check_session(config)
    out += check_policy(config.access, "access") + check_identity(config) + check_ui(config)
    if not config.upstreams:
        out.append("upstreams: at least one [[upstreams]] table is required")
    seen: set[tuple[str, str]] = set()
    for index, upstream in enumerate(config.upstreams):
        where = f"upstreams[{index}]"
        out += check_upstream(upstream, where)
        path = upstream.path.rstrip("/") or "/"  # /app and /app/ are one prefix
        key = (upstream.host.lower(), path if upstream.case_sensitive else path.lower())
        if key in seen:
            out.append(f"{where}.path: {upstream.path!r} is already routed for this host")
        seen.add(key)
    return out
