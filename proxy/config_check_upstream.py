"""Checks of [[upstreams]] tables and access policies: one "key: problem" line each."""

from __future__ import annotations

import re
import warnings

from yarl import URL

from .config import AccessPolicyConfig, Config, UpstreamConfig
from .step_up import CONTEXT_ID
from .upstream_tls import TLS_KEYS, tls_settings
from .validators import DOMAIN as _DOMAIN
from .validators import is_guid, is_loopback_host


def check_policy(policy: AccessPolicyConfig, where: str) -> list[str]:
    out = [f"{where}.domains: {d!r} is not a domain name"
           for d in policy.domains if not _DOMAIN.match(d.lstrip("@"))]
    out += [f"{where}.tenants: {t!r} must be a tenant GUID" for t in policy.tenants
            if not is_guid(t)]
    out += [f"{where}.emails: {e!r} must contain exactly one @" for e in policy.emails
            if e.count("@") != 1]
    out += [f"{where}.auth_context: {c!r} must be an authentication context id, c1 to c99"
            for c in policy.auth_context if not CONTEXT_ID.match(c)]
    if policy.max_auth_age < 0 or (0 < policy.max_auth_age < 60):
        out.append(f"{where}.max_auth_age: must be 0 (any) or at least 1m")
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
    if u.connect_timeout <= 0:
        out.append(f"{where}.connect_timeout: must be greater than 0")
    if u.max_connections < 1:
        out.append(f"{where}.max_connections: must be at least 1")
    if not u.url.lower().startswith("https://"):
        out += [f"{where}.{key}: only for https:// upstreams" for key in TLS_KEYS
                if getattr(u, key)]
    if u.client_key_file and not u.client_cert_file:
        out.append(f"{where}.client_key_file: needs client_cert_file")
    if u.access is not None:
        out += check_policy(u.access, f"{where}.access")
    return out


def check_shared_origins(config: Config) -> list[str]:
    """Routes to one origin share its pooled connections, hence its TLS settings."""
    first: dict[tuple[str, str, int | None], tuple[int, tuple[str, str, str, str, bool]]] = {}
    out = []
    for index, u in enumerate(config.upstreams):
        url = URL(u.url)
        origin = (url.scheme, url.host or "", url.port)
        settings = tls_settings(u)
        if origin in first and first[origin][1] != settings:
            out.append(f"upstreams[{index}].ca_file: TLS settings differ from "
                       f"upstreams[{first[origin][0]}], which has the same origin")
        first.setdefault(origin, (index, settings))
    return out


_OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


def check_upstream_token(config: Config) -> list[str]:
    """pass_authorization_header and the API it asks Entra for (azure.upstream_scopes)."""
    scopes = config.azure.upstream_scopes
    out: list[str] = []
    for index, u in enumerate(config.upstreams):
        if not u.pass_authorization_header:
            continue
        where = f"upstreams[{index}].pass_authorization_header"
        if not scopes:
            out.append(f"{where}: needs azure.upstream_scopes, the API's scope (e.g. "
                       "[\"api://<app-id>/.default\"])")
        if "offline_access" not in config.azure.scopes:
            out.append(f"{where}: needs 'offline_access' in azure.scopes (the token is asked "
                       "for with the session's refresh token)")
        if config.session.store == "cookie":
            out.append(f"{where}: needs a server-side session store (session.store = 'memory' "
                       "or 'redis'): the access token is never put in a cookie")
    resources: list[str] = []
    for scope in scopes:
        resource, _, name = scope.rpartition("/")
        if scope.lower() in _OIDC_SCOPES:
            out.append(f"azure.upstream_scopes: {scope!r} is a sign-in scope; list only the "
                       "API's scopes (offline_access is added)")
        elif not resource or not name or any(c.isspace() for c in scope):
            out.append(f"azure.upstream_scopes: {scope!r} must name its API, as "
                       "'<resource>/<scope>' (e.g. 'api://<app-id>/.default')")
        elif resource not in resources:
            resources.append(resource)
    if len(resources) > 1:
        out.append(f"azure.upstream_scopes: scopes of {len(resources)} APIs "
                   f"({', '.join(resources)}); Entra issues a token for one API at a time")
    return out
