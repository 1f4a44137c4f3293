"""Checks of what the proxy tells upstreams and shows people: [identity], [api] and [ui].
One "key: problem, what is allowed" line per problem, like proxy/config_check.py."""

from __future__ import annotations

import os
import re

from .config import Config
from .header_budget import PATTERN, POLICY
from .validators import is_guid

_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_RESERVED_HEADERS = {
    "host", "cookie", "authorization", "connection", "upgrade", "content-length",
    "transfer-encoding", "te", "trailer", "keep-alive", "proxy-authorization",
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id",
}


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
    out += _check_budget(config)
    azure = config.azure
    if i.trust_unverified_email and not (
            is_guid(azure.tenant_id) and not azure.allow_any_tenant
            and {t.lower() for t in azure.allowed_tenants} <= {azure.tenant_id.lower()}):
        out.append("identity.trust_unverified_email: only for a single tenant (tenant_id a "
                   "GUID, no other allowed_tenants): another tenant's admin can put any "
                   "address in `email`; add the xms_edov optional claim instead")
    return out + check_api(config)


# Stock servers' per-line limit (aiohttp, gunicorn: 8,190 bytes); below the floor not even
# a signed assertion without groups fits.
MAX_LINE = 8190
MIN_LINE = 1024
MAX_TOTAL = 65536


def _check_budget(config: Config) -> list[str]:
    i, out = config.identity, []
    if not MIN_LINE <= i.max_header_bytes <= MAX_LINE:
        out.append(f"identity.max_header_bytes: {i.max_header_bytes} is outside {MIN_LINE}.."
                   f"{MAX_LINE} (stock upstreams refuse lines past 8,190 bytes)")
    if not i.max_header_bytes <= i.max_total_header_bytes <= MAX_TOTAL:
        out.append(f"identity.max_total_header_bytes: {i.max_total_header_bytes} must be at "
                   f"least max_header_bytes ({i.max_header_bytes}) and at most {MAX_TOTAL} "
                   "(nginx takes 4 x 8 KB of headers by default)")
    for entry in i.groups_filter:
        if entry == POLICY:
            if not config.policy_groups:
                out.append("identity.groups_filter: 'policy' names no group: no access policy "
                           "has `groups`, so no group would reach the upstreams")
        elif entry.startswith(PATTERN):
            try:
                re.compile(entry[len(PATTERN):])
            except re.error as exc:
                out.append(f"identity.groups_filter: {entry!r} is not a valid regular "
                           f"expression ({exc.msg})")
        elif not entry.strip() or entry != entry.strip():
            out.append(f"identity.groups_filter: {entry!r} must be a group id, "
                       f"'{PATTERN}<pattern>' or '{POLICY}'")
    return out


def check_api(config: Config) -> list[str]:
    api, out = config.api, []
    if api.accept_bearer and not api.allowed_client_ids:
        # Fail closed: Entra gives any app in the tenant a token for the API.
        out.append("api.allowed_client_ids: required with accept_bearer: the client IDs "
                   "of the apps that may call (Entra issues tokens to any app in the tenant)")
    out += [f"api.allowed_client_ids: {c!r} must be an application (client) ID GUID"
            for c in api.allowed_client_ids if not is_guid(c)]
    return out


def check_ui(config: Config) -> list[str]:
    logo = config.ui.logo_url
    if logo and not (logo.startswith("https://") or (logo.startswith("/")
                                                     and not logo.startswith("//"))):
        return [f"ui.logo_url: {logo!r} must be an https:// URL or a path starting with /"]
    return []

