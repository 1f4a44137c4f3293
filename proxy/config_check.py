"""Semantic checks of a typed Config: one "key: problem, what is allowed" line per problem."""

from __future__ import annotations

import ipaddress
import re

from yarl import URL

from .config import TENANT_ALIASES, Config, SessionConfig
from .config_check_credential import check_credential
from .config_check_identity import check_identity, check_ui
from .config_check_redis import check_redis
from .config_check_upstream import (
    check_policy,
    check_shared_origins,
    check_upstream,
    check_upstream_token,
)
from .validators import DOMAIN as _DOMAIN
from .validators import is_guid, is_loopback_host

_COOKIE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SERVER_HEADER = re.compile(r"^[!-~]([ -~]{0,98}[!-~])?$")  # visible ASCII, inner spaces


def _url_problem(value: str, *, allow_path: bool) -> str | None:
    if value != value.strip() or any(c.isspace() for c in value):
        return "must not contain spaces"
    try:
        url = URL(value)
    except (ValueError, TypeError):  # urllib's bare "Invalid IPv6 URL" and the like
        return "is not a URL"
    if url.scheme not in ("http", "https") or not url.host:
        return "must be an absolute http(s) URL"
    if not (_DOMAIN.match(url.host) or _is_ip(url.host) or url.host == "localhost"):
        return "has no valid host name"
    if url.scheme == "http" and not is_loopback_host(url.host):
        return "must use https (plain http is allowed only for loopback hosts)"
    if not allow_path and url.path not in ("", "/"):
        return "must be an origin without a path"
    if url.query_string or url.fragment or url.user:
        return "must not carry a query, fragment or credentials"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


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
    if not 2 <= s.worker_stuck_timeout <= 3600:  # workers beat every second
        out.append(f"server.worker_stuck_timeout: {s.worker_stuck_timeout:g} s must be "
                   "between 2 s and 1 h")
    if s.metrics_listen:
        m_host, _, m_port = s.metrics_listen.rpartition(":")
        if not m_host or not m_port.isdigit() or not 0 < int(m_port) <= 65535:
            out.append(f"server.metrics_listen: {s.metrics_listen!r} must be host:port, "
                       "e.g. \"127.0.0.1:9090\"")
        elif s.metrics_listen == s.listen:
            out.append("server.metrics_listen: must differ from server.listen (metrics are "
                       "never served on the public port)")
    if s.admin_token and len(s.admin_token.reveal()) < 32:
        out.append("server.admin_token: too short; use at least 32 random characters (e.g. "
                   "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if s.log_format not in ("text", "json"):
        out.append(f"server.log_format: {s.log_format!r} must be one of ['text', 'json']")
    if s.log_level.lower() not in ("debug", "info", "warning", "error"):
        out.append(f"server.log_level: {s.log_level!r} must be one of "
                   "['debug', 'info', 'warning', 'error']")
    for key in ("header_timeout", "keepalive_timeout"):
        if getattr(s, key) <= 0:  # no "off": a client must never hold a connection for free
            out.append(f"server.{key}: must be more than 0, e.g. \"20s\"")
    if s.max_connections < 1:
        out.append(f"server.max_connections: {s.max_connections} must be at least 1")
    if not _SERVER_HEADER.match(s.server_header):
        # aiohttp fills an absent Server with its own and Python's versions, so "send none"
        # cannot be had: the choice is a product name without them.
        out.append(f"server.server_header: {s.server_header!r} must be 1-100 visible "
                   "characters, e.g. \"azure-auth-proxy\"")
    for h in s.allowed_redirect_hosts:
        if not _DOMAIN.match(h.removeprefix("*.").removeprefix(".")) and not is_loopback_host(h):
            out.append(f"server.allowed_redirect_hosts: {h!r} must be a host name or *.domain")
    return out + _check_tls(config)


def _check_tls(config: Config) -> list[str]:
    """The listener's TLS; whether the files load and match is check_files' (app.py)."""
    s = config.server
    out: list[str] = []
    for key, other in (("tls_cert_file", "tls_key_file"), ("tls_key_file", "tls_cert_file")):
        if getattr(s, other) and not getattr(s, key):
            out.append(f"server.{key}: required with server.{other} (TLS needs the "
                       "certificate chain and its key)")
    if s.tls and s.public_url.startswith("http://"):
        out.append(f"server.public_url: {s.public_url!r} must be https:// when the proxy "
                   "serves TLS (server.tls_cert_file)")
    if s.tls_watch_interval and not 0.1 <= s.tls_watch_interval <= 3600:
        out.append(f"server.tls_watch_interval: {s.tls_watch_interval:g} s must be 0 (off) "
                   "or between 100ms and 1h")
    if s.http_redirect_listen:
        _, sep, r_port = s.http_redirect_listen.rpartition(":")
        if not sep or not r_port.isdigit() or not 0 <= int(r_port) <= 65535:  # ":port": all
            out.append(f"server.http_redirect_listen: {s.http_redirect_listen!r} must be "
                       "[host]:port, e.g. \":8080\"")
        elif not s.tls:
            out.append("server.http_redirect_listen: needs TLS on server.listen "
                       "(server.tls_cert_file and server.tls_key_file)")
        elif s.http_redirect_listen in (s.listen, s.metrics_listen):
            out.append("server.http_redirect_listen: must differ from server.listen and "
                       "server.metrics_listen")
        elif s.workers > 1 and r_port == "0":
            out.append("server.http_redirect_listen: several workers need a fixed port")
    if s.tls and not config.session.secure:
        out.append("session.secure: false, but the proxy serves TLS (server.tls_cert_file): "
                   "session cookies are always Secure then; remove the setting")
    return out


def check_azure(config: Config) -> list[str]:
    a = config.azure
    out: list[str] = []
    if not a.client_id:
        out.append("azure.client_id: required (the app registration's Application (client) ID)")
    elif not is_guid(a.client_id):
        out.append(f"azure.client_id: {a.client_id!r} must be the Application (client) ID, a "
                   "GUID like 00000000-0000-0000-0000-000000000000 (not the app's name)")
    if bool(a.client_certificate_file) != bool(a.client_private_key_file):
        out.append("azure.client_certificate_file: set together with "
                   "azure.client_private_key_file (the certificate's private key)")
    out += check_credential(a, lambda url: _url_problem(url, allow_path=True))
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
    return (_check_session_keys(config.session) + _check_session_store(config)
            + _check_session_cookie(config) + _check_session_times(config.session))


def _check_session_keys(s: SessionConfig) -> list[str]:
    out: list[str] = []
    if s.secret and s.secrets:
        out.append("session.secrets: set together with session.secret; use one")
    keys = list(s.secrets) or [s.secret]
    if not any(keys):
        out.append("session.secret: required (>= 32 random bytes; e.g. "
                   "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    elif any(len(k.reveal().encode()) < 32 for k in keys):
        out.append("session.secret: too short; use at least 32 random bytes")
    return out


def _check_session_store(config: Config) -> list[str]:
    s = config.session
    out: list[str] = []
    if s.store not in ("cookie", "memory", "redis"):
        out.append(f"session.store: {s.store!r} must be one of ['cookie', 'memory', 'redis']")
    if s.store == "memory" and config.server.workers > 1:
        out.append("session.store: 'memory' lives in one process, but server.workers > 1; "
                   "use 'redis'")
    if s.store == "redis":
        out += check_redis(s)
    if s.memory_max_sessions < 1:
        out.append("session.memory_max_sessions: must be at least 1")
    if s.idle_timeout and s.store == "cookie":
        out.append("session.idle_timeout: needs a server-side store (store = 'memory' or "
                   "'redis')")
    return out


def _check_session_cookie(config: Config) -> list[str]:
    s = config.session
    out: list[str] = []
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
    # With TLS on, server.public_url's own line says https is needed: one line, not two.
    if s.secure and config.server.public_url.startswith("http://") and not config.server.tls:
        out.append("session.secure: true, but server.public_url is plain http, so browsers "
                   "would drop the cookie; set secure = false (loopback only)")
    return out


def _check_session_times(s: SessionConfig) -> list[str]:
    out: list[str] = []
    if s.refresh < 0:
        out.append("session.refresh: must not be negative")
    if s.max_age <= 0:
        out.append("session.max_age: must be greater than 0")
    return out


def _covers(cookie_domain: str, public_url: str) -> bool:
    domain = cookie_domain.lstrip(".").lower()
    try:
        host = (URL(public_url).host or "").lower()
    except ValueError:  # a bad public_url is reported under its own key
        return True
    return not host or host == domain or host.endswith("." + domain)


def config_warnings(config: Config) -> list[str]:
    """Values that may be intended but usually break sign-in: "key: problem" lines that do
    not stop the proxy. Entra's groups claim carries group object IDs; it carries names only
    for groups synced from on-premises AD when the app registration's groups claim is set to
    emit sAMAccountName (optionalClaims additionalProperties "sam_account_name" and its
    "netbios_domain_and_..." / "dns_domain_and_..." forms) or, for groups assigned to the
    app, "cloud_displayname". Groups read from Graph on overage are always object IDs."""
    policies = [("access", config.access)] + [
        (f"upstreams[{i}].access", u.access) for i, u in enumerate(config.upstreams)
        if u.access is not None]
    return [f"{where}.groups: {g!r} is not a group object ID (GUID); Entra sends object IDs "
            "unless the app registration emits sAMAccountName or cloud display names "
            "(docs/configuration.md), so this rule matches nobody otherwise"
            for where, policy in policies for g in policy.groups if not is_guid(g)]


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
    out += check_shared_origins(config) + check_upstream_token(config)
    return out
