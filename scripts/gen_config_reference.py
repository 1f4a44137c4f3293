"""Generate docs/configuration.md from the config dataclasses in proxy/config.py.

    python scripts/gen_config_reference.py > docs/configuration.md   # regenerate
    python scripts/gen_config_reference.py --check                    # exit 1 if stale

Types, defaults, environment variable names and `_file` support are read from the
dataclasses (whose types proxy/config_values.py maps to parsers); the one-line descriptions
live in DESCRIPTIONS below, keyed "section.key". A field without a description, a description
without a field, or a field type this script does not know makes it exit 1 and list them: the
reference cannot silently fall behind the code. Keys that proxy/config_check.py refuses as
"not supported by this release" are found by asking config_check, not by hand.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from proxy import config_check  # noqa: E402
from proxy.config import SECTIONS, Config, Secret, UpstreamConfig  # noqa: E402

OUTPUT = ROOT / "docs" / "configuration.md"
COMMAND = "python scripts/gen_config_reference.py > docs/configuration.md"

# How each field type is written, keyed by its annotation string (the loader resolves the
# same annotations to parsers in proxy/config_values.py).
TYPES = {
    "str": "string",
    "Secret": "string, secret",
    "bool": "boolean",
    "int": "integer",
    "Duration": "duration",
    "tuple[str, ...]": "list of strings",
    "tuple[Secret, ...]": "list of strings, secret",
    "Mapping[str, str]": "table: string → string",
    "AccessPolicyConfig | None": "table",
}

SECTION_INTROS = {
    "server": "Where the proxy listens, the origin users see, logging and redirect targets.",
    "azure": (
        "The app registration in Microsoft Entra ID and how to talk to it. "
        "[azure-portal-setup.md](azure-portal-setup.md) shows where each value comes from."
    ),
    "session": (
        "Session cookies and where sessions live. The proxy's cookies are always HttpOnly; "
        "`Path=/`."
    ),
    "access": (
        "The global access policy, applied to every route that has no `[upstreams.access]` "
        "of its own. Empty lists: any signed-in user of an allowed tenant. Several non-empty "
        "lists: the user must match each of them (AND); within one list any entry is enough "
        "(OR)."
    ),
    "identity": "What the upstream learns about the user, in request headers.",
    "api": "Bearer tokens from API clients that have no session cookie.",
    "ui": (
        "The proxy's own pages (sign-in, errors, access denied, signed out). API clients get "
        "JSON instead."
    ),
    "upstreams": (
        "One `[[upstreams]]` table per route; at least one is required. A request goes to the "
        "route with a matching `host` (exact names first, then `*.` wildcards, then routes "
        "without `host`) and the longest matching `path` prefix; no match is a 404. "
        "From the environment, `PROXY_UPSTREAMS` holds the whole array (JSON "
        "`[{\"url\": \"http://127.0.0.1:8080\"}]` or TOML `[{ url = \"...\" }]`); the "
        "`--upstream [PATH=]URL` flag (repeatable) replaces both."
    ),
    "upstreams.access": (
        "Optional, per route: when a `[[upstreams]]` entry has an `[upstreams.access]` table, "
        "it **replaces** the global `[access]` policy for that route (it is not merged). An "
        "empty table therefore lets in any signed-in user of an allowed tenant. Same keys and "
        "rules as `[access]`; in `PROXY_UPSTREAMS` an `\"access\"` object."
    ),
}

DESCRIPTIONS = {
    # [server]
    "server.listen": (
        "`host:port` to listen on; the host is required (`0.0.0.0` for every IPv4 interface, "
        "`[::]` for IPv6). Plain HTTP: put TLS in front."
    ),
    "server.public_url": (
        "**Required.** The external origin users browse to, e.g. `https://tools.example.com` "
        "(no path, query or credentials; `http://` only for loopback hosts). The redirect URI "
        "is `{public_url}/callback/{connector_id}`."
    ),
    "server.trusted_proxies": (
        "IP addresses or CIDRs of load balancers in front of the proxy. Only from these peers "
        "are `X-Forwarded-For` (appended to), `-Proto`, `-Host`, `Forwarded`, `X-Real-IP`, "
        "`X-Request-Id` and, on `/oauth2/auth`, `X-Forwarded-Uri`/`X-Original-URL` believed; "
        "from anyone else they are dropped or replaced."
    ),
    "server.workers": (
        "Processes sharing the listening port (SO_REUSEPORT) under a supervisor that replaces "
        "one that dies; 1 to 64. More than 1 needs a fixed port in `listen`, a `cookie` or "
        "`redis` store (not `memory`) and, with the assertion header on, "
        "`[identity] assertion_key_file`."
    ),
    "server.metrics_listen": (
        "`host:port` of a separate listener serving Prometheus metrics at `/metrics`; must "
        "differ from `listen` (metrics never appear on the public port). Empty: off."
    ),
    "server.admin_token": (
        "Secret (or `admin_token_file`). Session administration (`GET /admin/sessions`, "
        "`POST /admin/sessions/revoke`) is served on `metrics_listen`; empty, only loopback "
        "peers may use it. Set (at least 32 random characters), every caller, loopback too, "
        "must send `Authorization: Bearer <token>`. docs/operations.md (Offboarding)."
    ),
    "server.log_format": (
        "`text` or `json`: every line on stderr is one event; in `json` one JSON object "
        "(`time`, `level`, `logger`, `event`, the event's fields, `traceback` for errors), in "
        "`text` the same fields as `key=value` (values escaped, quoted when they hold a space, "
        "quote or `=`). Never tokens, cookies, codes or secrets. README.md (Logs) has examples."
    ),
    "server.log_level": "`debug`, `info`, `warning` or `error` (any case).",
    "server.access_log": (
        "One `access` event per request: request id, method, host, path (never the query), "
        "status, duration, bytes sent, user, tenant, client address (through "
        "`trusted_proxies` only), user agent, route, upstream status and time. `false`: off."
    ),
    "server.server_header": (
        "`Server` on the proxy's own answers (and on an upstream's that has none): a product "
        "name with no version. An upstream's own `Server` passes unchanged."
    ),
    "server.allowed_redirect_hosts": (
        "Extra hosts that `rd=` and post-login targets may name in absolute URLs, besides "
        "`public_url`'s own origin. `*.example.com` (or `.example.com`) matches subdomains "
        "only, not `example.com`. Any port and `http`/`https` are accepted on these hosts."
    ),
    "server.drain_timeout": (
        "On shutdown (SIGTERM), how long in-flight requests may take to finish; open "
        "WebSockets are closed with code 1001."
    ),
    "server.header_timeout": (
        "How long a new connection may take to send its first complete request head "
        "(request line and headers); then it gets `408` and is closed, so a client that "
        "connects and sends nothing, or drips a head, cannot hold it (nginx: "
        "`client_header_timeout`). Later requests on the connection fall under "
        "`keepalive_timeout`. With `tls_cert_file`, the TLS handshake must also complete "
        "within it. More than 0."
    ),
    "server.keepalive_timeout": (
        "How long an idle keep-alive connection stays open after a response until the next "
        "request head is complete; then it is closed (nginx: `keepalive_timeout`). More "
        "than 0; keep it above a load balancer's idle timeout."
    ),
    "server.max_connections": (
        "Open client connections per process (each worker has its own); a connection past "
        "it is answered `503` (`Retry-After: 1`) and closed at once, and one WARNING is "
        "logged until the count drops below again (nginx: `worker_connections`). A "
        "worker raises its soft open-file limit to twice this + 256 (a proxied request "
        "also holds an upstream connection), within the hard limit; a WARNING says if "
        "that cannot hold even this + 256."
    ),
    "server.worker_stuck_timeout": (
        "With `workers` > 1: a worker's event loop reports to the supervisor every second; "
        "one silent this long (a callback that never returns, a stopped process) is killed "
        "and replaced. 2 s to 1 h. A starting worker has at least 60 s to begin serving."
    ),
    "server.tls_cert_file": (
        "PEM file with the certificate chain (the server's certificate first, then the "
        "intermediates) that `listen` serves TLS with; set with `tls_key_file`. Empty: plain "
        "HTTP (TLS ends at a load balancer or ingress). TLS 1.2 and 1.3 only, TLS 1.2 with "
        "ECDHE and AES-GCM or ChaCha20-Poly1305 only; ALPN `http/1.1`. `public_url` must be "
        "`https://`, and session cookies are always `Secure`. The pair is reloaded on SIGHUP "
        "and when the files change (see `tls_watch_interval`); a new pair that does not "
        "load is logged as an error and the running certificate kept. docs/tls.md."
    ),
    "server.tls_key_file": (
        "The unencrypted PEM private key of `tls_cert_file` (RSA or EC)."
    ),
    "server.tls_watch_interval": (
        "How often both TLS files are checked (inode, size, modification time); a change "
        "reloads the pair for new connections (open ones keep theirs), as after a "
        "cert-manager or certbot renewal. `0`: only on SIGHUP. 100 ms to 1 h."
    ),
    "server.http_redirect_listen": (
        "`[host]:port` of a plain HTTP listener (e.g. `:8080`) answering every request "
        "`308` to the same path on `https://`, except `/ping` (answered `OK`). The target "
        "host is the request's `Host` only when it is `public_url`'s or an upstream's "
        "`host`; any other goes to `public_url`'s host, so the listener is never an open "
        "redirect. The port is `public_url`'s. Needs `tls_cert_file`. Empty: off."
    ),
    # [azure]
    "azure.client_id": (
        "**Required.** The app registration's Application (client) ID, a GUID (not the app's "
        "name); ID tokens must carry it as `aud`."
    ),
    "azure.client_secret": (
        "The client secret's **Value** (not its Secret ID). Required when `client_credential` "
        "is `secret` (the default without `client_certificate_file`); with both set and "
        "`client_credential` empty, the certificate is used."
    ),
    "azure.client_certificate_file": (
        "PEM certificate uploaded to the app registration (leaf first if the file holds a "
        "chain; RSA ≥ 2048 bits; must be valid now). The proxy then authenticates with a PS256 "
        "client assertion (`x5t#S256`) instead of a secret. Set with `client_private_key_file`."
    ),
    "azure.client_private_key_file": (
        "PEM file with the certificate's **unencrypted** RSA private key (may be the same file "
        "as the certificate). A missing, expired or mismatched pair stops startup and "
        "`check-config`."
    ),
    "azure.client_credential": (
        "How the proxy authenticates to the token endpoint: `secret`, `certificate`, "
        "`workload_identity` (the federated token in `federated_token_file`, read afresh for "
        "every token request) or `managed_identity` (a token for `api://AzureADTokenExchange` "
        "from the platform's managed identity endpoint, cached until 5 minutes before it "
        "expires). Empty: `certificate` when `client_certificate_file` is set, else `secret`. "
        "The last two need no secret at all and refuse a leftover `client_secret` or "
        "certificate ([docs/secretless.md](secretless.md))."
    ),
    "azure.federated_token_file": (
        "`workload_identity`: the file holding the federated (service account) token. "
        "Default: the `AZURE_FEDERATED_TOKEN_FILE` that Azure Workload Identity sets in the "
        "pod. `check-config` reports a missing or unreadable file; an expired token fails "
        "sign-in with 502 and `/ready` with 503, naming the cause."
    ),
    "azure.managed_identity_client_id": (
        "`managed_identity`: the client ID of a user-assigned identity (sent as `client_id`); "
        "empty uses the system-assigned identity."
    ),
    "azure.imds_url": (
        "`managed_identity`: the managed identity endpoint. Default IMDS (VMs, AKS nodes; "
        "`Metadata: true`, api-version 2018-02-01); on App Service and Container Apps the "
        "`IDENTITY_ENDPOINT` when `IDENTITY_HEADER` is set too (then `X-IDENTITY-HEADER`, "
        "api-version 2019-08-01). Plain http only for loopback or link-local hosts."
    ),
    "azure.identity_header": (
        "`managed_identity` on App Service / Container Apps: the `X-IDENTITY-HEADER` value. "
        "Default: the `IDENTITY_HEADER` the platform sets; when set, `imds_url` is spoken to "
        "in App Service's form."
    ),
    "azure.app_signing_keys": (
        "`true` for an app registration that uses claims mapping: Entra signs its tokens with "
        "an app-specific key published only at the JWKS URI with `?appid=<client_id>`, which "
        "the proxy then fetches (it also lists the tenant's keys). Without it, every sign-in "
        "of such an app is refused as signed with an unknown key."
    ),
    "azure.upstream_scopes": (
        "The API whose access token is sent to upstreams with `pass_authorization_header`, "
        "e.g. `[\"api://<app-id>/.default\"]`: scopes of one resource (Entra issues one "
        "token per resource); `offline_access` is added. The token is obtained with the "
        "session's refresh token, kept server-side and refreshed `session.refresh` before it "
        "expires. The app registration needs that delegated permission, consented."
    ),
    "azure.tenant_id": (
        "Who may sign in: a tenant GUID or verified domain (single tenant), `organizations` "
        "(work/school accounts of any tenant), `common` (work/school and personal accounts) or "
        "`consumers` (personal Microsoft accounts only)."
    ),
    "azure.cloud_instance": (
        "Login origin of the Entra cloud: `https://login.microsoftonline.com/` (global), "
        "`https://login.microsoftonline.us/` (US Government), "
        "`https://login.partner.microsoftonline.cn/` (China). Discovery's endpoints must be on "
        "this origin."
    ),
    "azure.connector_id": (
        "Last segment of the redirect URI `{public_url}/callback/{connector_id}`: letters, "
        "digits, `-`, `_`."
    ),
    "azure.scopes": (
        "Scopes requested at sign-in and on token requests; must include `openid`. `profile` "
        "brings `oid`/`tid`, `email` the email claim, `offline_access` a refresh token, "
        "`User.Read` lets the proxy read groups from Graph on overage. Keep one resource: "
        "Entra refuses scopes of several APIs in one request."
    ),
    "azure.allowed_tenants": (
        "Tenant GUIDs whose users (and bearer tokens) are accepted. Required for "
        "`organizations`/`common` unless `allow_any_tenant = true`; when set, enforced in "
        "every tenant mode."
    ),
    "azure.allow_any_tenant": (
        "`true`: with `organizations`/`common` and no `allowed_tenants`, accept every Entra "
        "tenant (a real multi-tenant app). The issuer is still checked against the token's "
        "`tid`."
    ),
    "azure.prompt": (
        "`prompt` sent to Entra's authorize endpoint, e.g. `select_account` (always show the "
        "account picker) or `login`; empty: none."
    ),
    "azure.domain_hint": (
        "`domain_hint` sent to Entra, e.g. `contoso.com`, to skip home-realm discovery; "
        "empty: none."
    ),
    "azure.graph_url": (
        "Microsoft Graph origin for reading group memberships on overage (`https://`, no "
        "path). Empty: discovery's `msgraph_host`, else the Graph host of `cloud_instance`."
    ),
    "azure.federated_logout": (
        "`true`: `/oauth2/sign_out` also ends the Entra session (the browser goes to Entra's "
        "logout, then to `{public_url}/oauth2/signed_out`, which must be a registered redirect "
        "URI); `rd=` is then not followed."
    ),
    "azure.timeout": (
        "Timeout of each call to Entra or Graph (discovery, keys, token, Graph); must be "
        "greater than 0."
    ),
    # [session]
    "session.secret": (
        "**Required** (or `secrets`). Signs the cookies and, for `memory`/`redis`, encrypts "
        "session records (AES-256-GCM, key derived with HKDF). At least 32 bytes of random "
        "text. Not together with `secrets`."
    ),
    "session.secrets": (
        "Key rotation, instead of `secret`: keys newest first, each ≥ 32 bytes. The first "
        "signs and encrypts; every key verifies and decrypts. In `secrets_file`, one key per "
        "line."
    ),
    "session.store": (
        "`cookie` (identity claims in signed cookies, never tokens), `memory` (server-side, "
        "one process, lost on restart) or `redis` (server-side, shared by replicas). Only "
        "server-side stores refresh tokens, pass tokens upstream, honour `idle_timeout` and "
        "revoke sessions on sign-out and front-channel logout."
    ),
    "session.redis_url": (
        "`store = \"redis\"`: `redis://[user:password@]host:port/db`, `rediss://` for TLS. "
        "With Sentinel only user, password, db and the scheme are used; with Cluster it names "
        "one node."
    ),
    "session.redis_cluster": (
        "`true`: `redis_url` names one node of a Redis Cluster. Cannot be combined with "
        "Sentinel."
    ),
    "session.redis_sentinel_master": (
        "Sentinel: the master's name, e.g. `mymaster`. Set together with `redis_sentinels`."
    ),
    "session.redis_sentinels": (
        "Sentinel: each sentinel as `host:port` (not a URL). Set together with "
        "`redis_sentinel_master`."
    ),
    "session.redis_sentinel_password": (
        "Password of the sentinels themselves, if they require one; the data nodes' password "
        "goes in `redis_url`."
    ),
    "session.redis_ca_file": (
        "PEM CA bundle to verify a `rediss://` server signed by a private CA; must be a "
        "readable file."
    ),
    "session.memory_max_sessions": (
        "`store = \"memory\"`: most sessions kept; past it the least recently used are "
        "dropped. At least 1."
    ),
    "session.cookie_name": (
        "Session cookie name (1-64 letters, digits, `-`, `_`); also the prefix of chunk "
        "cookies (`_0`, `_1`, ...) and login-state cookies (`_login_...`). `__Host-` names "
        "work while `cookie_domain` is empty."
    ),
    "session.cookie_domain": (
        "`Domain` attribute of the proxy's cookies, e.g. `.example.com` to share one session "
        "across subdomains; empty: host-only cookies."
    ),
    "session.secure": (
        "`Secure` cookie attribute. Must be `false` when `public_url` is plain `http://` "
        "(loopback only, e.g. the demo), and cannot be `false` when the proxy serves TLS "
        "(`server.tls_cert_file`)."
    ),
    "session.samesite": (
        "`lax` or `none` (`none` needs `secure = true`). `strict` is refused: it would drop "
        "the login cookie on the return from Entra."
    ),
    "session.max_age": (
        "Absolute session lifetime from sign-in (also the cookies' `Max-Age`); greater than 0."
    ),
    "session.idle_timeout": (
        "Server-side stores: end a session unused this long, e.g. `\"30m\"`; `\"0\"`: never. "
        "A non-zero value with `store = \"cookie\"` is an error."
    ),
    "session.refresh": (
        "Server-side stores: refresh tokens this long before the access token expires, one "
        "refresh per session at a time across replicas. A refresh Entra rejects ends the "
        "session; an Entra outage keeps it. Ignored by the cookie store."
    ),
    # [access]
    "access.emails": (
        "Allowed addresses, exact and case-insensitive, compared with `email` and "
        "`preferred_username`; each must contain exactly one `@`."
    ),
    "access.domains": (
        "Allowed domains (`contoso.com`; a leading `@` is ignored), compared exactly with the "
        "domain of `email` and `preferred_username` (subdomains do not match). An address "
        "passes only with exactly one `@`."
    ),
    "access.groups": (
        "Entra group **object IDs** (GUIDs, case-insensitive); membership of any one is "
        "enough. Users past the token's group limit have their groups read from Graph at "
        "sign-in (always object IDs). A name here (`\"Admins\"`) gets a `config warning`: it "
        "matches only if the app registration's groups claim emits `sAMAccountName` "
        "(on-premises-synced groups) or `cloud_displayname` (groups assigned to the app)."
    ),
    "access.roles": "App role values (case-sensitive), as in the token's `roles` claim.",
    "access.tenants": (
        "Tenant GUIDs (the user's `tid`), on top of `[azure] allowed_tenants`; must be GUIDs."
    ),
    "access.members_only": (
        "`true`: refuse B2B guests (Entra's `acct` optional claim is 1, or `idp` names another "
        "tenant). Needs the `acct` optional claim on the ID token: without it everyone is "
        "refused (fail closed). Checked on every request, like every rule here."
    ),
    "access.allow_apps": (
        "Let app-only bearer tokens (client credentials: no user, Entra's `idtyp` `app` or "
        "no `scp`) pass this policy. Off: an app gets 403 even where no other rule is set. "
        "On: the caller still has to be in `[api] allowed_client_ids`, and the upstream "
        "sees it as an app (`X-Forwarded-Principal-Type: app`, assertion `idtyp: app`, "
        "Easy Auth claim `idtyp`), its `oid` being the app's service principal."
    ),
    "access.auth_context": (
        "Step-up: Conditional Access authentication context ids (`c1` to `c99`) the sign-in "
        "must satisfy. The sign-in asks Entra for them (`claims` with essential `acrs`) and "
        "the ID token's `acrs` must list each; a session without them is sent to sign in "
        "again (XHR/API: 401 `insufficient_claims` challenge). See docs/step-up.md."
    ),
    "access.max_auth_age": (
        "Step-up: the longest time since the user last authenticated at Entra (the ID "
        "token's `auth_time`, 2 minutes of clock leeway); sent as `max_age`, and a stale "
        "session signs in again with `prompt=login`. `0`: any. At least `1m` otherwise."
    ),
    "access.require_mfa": (
        "Step-up: the token's `amr` must hold `mfa` (with `max_auth_age`, within that age). "
        "Entra's v2.0 ID tokens carry no `amr`: for browser sign-ins require an "
        "`auth_context` whose Conditional Access policy requires MFA (docs/step-up.md)."
    ),
    # [identity]
    "identity.headers": (
        "Headers sent upstream, header name → claim. `groups`/`roles` are joined with `,`; a "
        "claim the user lacks sends no header. Any ID-token claim may be named (e.g. `upn`). "
        "Names: letters, digits, `-`; not `Host`, `Cookie`, `Authorization`, hop-by-hop "
        "headers, `X-Forwarded-For`/`-Proto`/`-Host` or `X-Request-Id`. Setting it replaces "
        "the whole default table."
    ),
    "identity.easy_auth": (
        "Also send Azure App Service \"Easy Auth\" headers (`X-MS-CLIENT-PRINCIPAL`, `-NAME`, "
        "`-ID`, `-IDP`) and serve `/.auth/me`, `/.auth/login/aad` and `/.auth/logout`; when "
        "off, those paths go upstream like any other. Client-sent `X-MS-CLIENT-PRINCIPAL*` and "
        "`X-MS-TOKEN-*` headers are always removed."
    ),
    "identity.easy_auth_tokens": (
        "With `easy_auth`: also send `X-MS-TOKEN-AAD-ID-TOKEN`, `-ACCESS-TOKEN`, `-EXPIRES-ON` "
        "and put the tokens in `/.auth/me` (never the refresh token). Needs `easy_auth = true` "
        "and a server-side store. Off by default: tokens on a same-origin endpoint are exposed "
        "to any XSS in the app."
    ),
    "identity.assertion_header": (
        "Header carrying a short-lived JWT about the user, signed by the proxy (`iss` = "
        "`public_url`'s origin, `aud` = the upstream's origin, `sub` = `tid/oid`), verifiable "
        "with the keys at `/oauth2/jwks`; `\"\"` turns it off. Must be a usable header name. "
        "See [upstream-verification.md](upstream-verification.md)."
    ),
    "identity.assertion_key_file": (
        "Unencrypted PEM key that signs the assertion: EC P-256 (ES256) or RSA ≥ 2048 bits "
        "(RS256); must be a readable file. Empty: a key is generated per process and lost on "
        "restart, so set it when several replicas serve one site."
    ),
    "identity.pass_access_token": (
        "Send the user's Entra access token (a Graph token with the default scopes) in "
        "`X-Forwarded-Access-Token`. Needs `store = \"memory\"` or `\"redis\"`."
    ),
    "identity.pass_id_token": (
        "Send the user's ID token in `X-Forwarded-Id-Token`. Needs `store = \"memory\"` or "
        "`\"redis\"`."
    ),
    "identity.trust_unverified_email": (
        "Use the `email` claim even without Entra's `xms_edov` optional claim (\"the email's "
        "domain is verified for the user's tenant\"). Off: `email` counts for `emails`/"
        "`domains` rules and is sent upstream only when `xms_edov` is true, since any "
        "tenant's admin can set any address (nOAuth). Allowed only with a single tenant "
        "(`tenant_id` a GUID, no other `allowed_tenants`). Prefer adding `xms_edov`."
    ),
    "identity.max_header_bytes": (
        "Longest header line the proxy adds for the user (`Name: value`, in bytes), "
        "1024..8190. Stock upstreams refuse lines past 8,190 bytes (aiohttp, gunicorn) or 8 KB "
        "(nginx), so the default stays well under. A list (`groups`, `roles`) longer than one "
        "line goes over repeated lines; the assertion and the Easy Auth principal go without "
        "their groups, marked as Entra marks an overage. See "
        "[identity-headers.md](identity-headers.md)."
    ),
    "identity.max_total_header_bytes": (
        "All identity header lines together (tokens excepted), at least `max_header_bytes` "
        "and at most 65536; at most 40 lines in any case. A list that would pass it is left "
        "out, never cut short, and `<Header>-Overflow: true` (e.g. "
        "`X-Forwarded-Groups-Overflow`) says so: the app reads the full list from "
        "`/oauth2/userinfo`. The default leaves half of nginx's 4 × 8 KB for the client's own "
        "headers."
    ),
    "identity.groups_filter": (
        "Which groups reach upstreams (headers, assertion, principal, `/oauth2/auth`): group "
        "object IDs (any case), `re:<pattern>` (a regular expression searched in each group), "
        "and `policy` (the groups that `[access]` and `[upstreams.access]` name). Empty: all. "
        "Access policies always see every group; `/oauth2/userinfo` and `/.auth/me` list "
        "them all. An ingress's `/oauth2/auth?allowed_groups=` is not a policy here: list "
        "those groups by ID. In the environment, a JSON list keeps a comma inside a pattern."
    ),
    # [api]
    "api.accept_bearer": (
        "Accept `Authorization: Bearer <Entra access token for this API>` instead of a "
        "cookie: RS256 against Entra's keys (v1 tokens against the v1 key set), the v2 "
        "issuer or, for v1 tokens, the issuer of the cloud's v1 discovery document, times, "
        "`aud`, `oid`, tenant rules, then the caller (`allowed_client_ids`); Graph tokens "
        "are refused. A bad token gets 401 `WWW-Authenticate: Bearer "
        "error=\"invalid_token\"`; a valid one from a caller not allowed gets 403."
    ),
    "api.audiences": (
        "Accepted `aud` values besides `[azure] client_id`, which is always accepted (a v2 "
        "token's `aud` is always the API's client ID): the API's App ID URI, e.g. "
        "`api://<client_id>`, which v1 tokens carry when the client asked for it by that "
        "name. Graph audiences never count."
    ),
    "api.allowed_client_ids": (
        "Application (client) IDs that may call with a bearer token (the token's `azp`, v1 "
        "`appid`), as App Service's allowed client applications. Required with "
        "`accept_bearer`: Entra issues client-credentials tokens for a tenant's APIs to any "
        "app in that tenant, and delegated ones to any client a user consents to."
    ),
    "api.required_scopes": (
        "A user's (delegated) token must carry at least one of these in `scp` (e.g. "
        "`access_as_user`); empty: any. App roles never count for it."
    ),
    "api.required_app_roles": (
        "An app-only token must carry at least one of these app roles in `roles` (assigned "
        "to the calling app on the API); empty: any. Apps also need `allow_apps` on the route."
    ),
    # [ui]
    "ui.title": "Product name shown in the title of every page the proxy serves.",
    "ui.logo_url": (
        "Optional logo on those pages: an `https://` URL or a path starting with `/` (e.g. "
        "served by an upstream's public route)."
    ),
    "ui.footer": "Optional footer text, e.g. `Questions? it-help@example.com`.",
    "ui.skip_provider_button": (
        "`true`: browsers without a session go straight to Entra. `false`: they get a "
        "\"Sign in with Microsoft\" page first (status 401)."
    ),
    # [[upstreams]]
    "upstreams.url": (
        "**Required.** Where matching requests go: `http(s)://host[:port][/path]`, no query or "
        "fragment. A path here is put in front of the forwarded path. WebSockets follow as "
        "`ws(s)://`."
    ),
    "upstreams.path": (
        "Path prefix served by this route; starts with `/`. `/app` matches `/app` and "
        "`/app/...`, not `/apple`, in any case unless `case_sensitive`. Longest prefix wins; "
        "a `(host, path)` pair may appear once. A request whose path another server could "
        "read as another route (`/app/../admin`, `/admin%2f..`, `/admin./`, `/admin%00/`) "
        "gets 400; the path goes upstream unchanged."
    ),
    "upstreams.host": (
        "Only for requests whose `Host` (any case, trailing dot and port ignored) is this "
        "name, or for `*.example.com` any subdomain at any depth (not `example.com`; the "
        "most specific wildcard wins). Empty: any host. A malformed `Host` gets 400."
    ),
    "upstreams.public": (
        "Regexes searched in the decoded request path (full path, before `strip_prefix`; no "
        "query): a match needs no sign-in and gets no identity headers. Anchor them (`^...$`). "
        "Paths with encoded `/` or `\\`, `.`/`..` segments, `;` or `//` never match."
    ),
    "upstreams.preserve_host": (
        "`true`: send the client's `Host` upstream (normalised: lower case, no trailing dot, "
        "no default port); `false`: the upstream URL's `host:port`. `X-Forwarded-Host` "
        "carries the normalised original either way."
    ),
    "upstreams.strip_prefix": (
        "`true`: remove `path` before forwarding (`/app/x` → `/x`, path normalised first). "
        "`false`: forward the path unchanged."
    ),
    "upstreams.case_sensitive": (
        "`false` (default): `path` matches in any case (`/ADMIN/x` is under `/admin`), as "
        "ASP.NET, IIS and Express route. `true` only for an upstream that itself tells "
        "`/Admin` from `/admin`."
    ),
    "upstreams.assertion_audience": (
        "The `aud` of the identity assertion sent on this route. Empty: the upstream's "
        "origin plus the route's `path` without its trailing slash, plus `?host=` and the "
        "route's `host` when it has one (`http://app:8080/app2`, "
        "`http://ingress?host=a.example.com`): every route gets its own audience. See "
        "docs/upstream-verification.md."
    ),
    "upstreams.timeout": (
        "The longest silence while waiting for or reading the response, and between bytes "
        "of a streamed request body from the client (past it: 408 and the upstream "
        "connection dropped); not a total limit, streams may run longer. For WebSockets: "
        "the handshake and the closing handshake."
    ),
    "upstreams.connect_timeout": (
        "How long opening a connection to the upstream (TCP and TLS) may take; past it, 504."
    ),
    "upstreams.max_connections": (
        "Most connections open at once to this upstream's origin (`scheme://host:port`), "
        "idle or busy. A request past it waits for one to come free, at most "
        "`connect_timeout`, then gets 503. Routes sharing an origin share its connections."
    ),
    "upstreams.ca_file": (
        "`https://` only: a PEM file of the CA(s) that issue the upstream's certificate, "
        "trusted instead of the system store (a private CA). The certificate must still name "
        "the host (or `server_name`); a wrong name or an unknown CA is a 502."
    ),
    "upstreams.client_cert_file": (
        "`https://` only: a PEM client certificate presented to the upstream (mTLS); it may "
        "hold the key too, else set `client_key_file`."
    ),
    "upstreams.client_key_file": (
        "The unencrypted PEM key of `client_cert_file`, when it is a separate file."
    ),
    "upstreams.server_name": (
        "`https://` only: the name the upstream's certificate must carry, also sent as SNI "
        "(default: the URL's host). For upstreams reached by IP or an internal alias."
    ),
    "upstreams.tls_insecure_skip_verify": (
        "`https://` only: `true` accepts any certificate (no chain or name check). Never "
        "the default, never implied by another key; logged as a warning at every start and "
        "reload. Routes sharing an origin must agree on every TLS key."
    ),
    "upstreams.pass_authorization_header": (
        "`true`: send `Authorization: Bearer <the user's access token for "
        "azure.upstream_scopes>` (Grafana JWT auth, Kubernetes Dashboard); the client's own "
        "`Authorization` is removed, also on public paths, and a request admitted by an "
        "`[api]` bearer token is refused (403). Needs `session.store = \"memory\"` or "
        "`\"redis\"`. See [upstream-token.md](upstream-token.md)."
    ),
    "upstreams.access": (
        "Table `[upstreams.access]`: this route's own policy, replacing `[access]` (see "
        "below)."
    ),
}

# Values that config_check should accept unless the key is refused as "not in this release".
# Each is rendered as "not available" when config_check refuses it, so the reference follows
# the code when a feature ships.
PROBES: dict[str, Any] = {
    "server.workers": 2,
    "server.metrics_listen": "127.0.0.1:9090",
    "identity.easy_auth": True,
    "identity.assertion_header": "X-Auth-Assertion",
}
NOT_YET_MARKER = "not supported by this release"


@dataclasses.dataclass(frozen=True)
class Key:
    section: str  # "server", ..., "upstreams", "upstreams.access"
    name: str
    kind: str  # the field's annotation string
    default: Any
    description_key: str

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        if self.section.startswith("upstreams"):
            return ""
        return f"PROXY_{self.section.upper()}_{self.name.upper()}"

    @property
    def accepts_file(self) -> bool:
        return "Secret" in self.kind


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None  # pragma: no cover - every config field has a default


def _section_of(cls: type[Any]) -> str | None:
    return next((name for name, c in SECTIONS.items() if c is cls), None)


def keys() -> list[Key]:
    """Every configurable key, in the order of the dataclasses."""
    out: list[Key] = []
    tables: list[tuple[str, type[Any]]] = [*SECTIONS.items(), ("upstreams", UpstreamConfig)]
    for section, cls in tables:
        for f in dataclasses.fields(cls):
            kind = str(f.type)
            out.append(Key(section, f.name, kind, _default(f), f"{section}.{f.name}"))
    # The nested policy table: its keys are those of the section with the same class.
    nested = next(f for f in dataclasses.fields(UpstreamConfig) if f.name == "access")
    policy_cls = _policy_class(str(nested.type))
    shared = _section_of(policy_cls) if policy_cls else None
    if policy_cls is not None and shared is not None:
        for f in dataclasses.fields(policy_cls):
            out.append(Key("upstreams.access", f.name, str(f.type), _default(f),
                           f"{shared}.{f.name}"))
    return out


def _policy_class(annotation: str) -> type[Any] | None:
    name = annotation.split("|")[0].strip()
    return next((c for c in SECTIONS.values() if c.__name__ == name), None)


def problems() -> list[str]:
    """Undocumented fields, descriptions of fields that no longer exist, unknown types."""
    all_keys = keys()
    wanted = {k.description_key for k in all_keys}
    out = [f"{k}: no description in DESCRIPTIONS" for k in sorted(wanted - DESCRIPTIONS.keys())]
    out += [f"{k}: described, but no such config field" for k in
            sorted(DESCRIPTIONS.keys() - wanted)]
    out += [f"{k.dotted}: unknown field type {k.kind!r} (add it to TYPES)" for k in all_keys
            if k.kind not in TYPES]
    out += [f"{s}: no section introduction" for s in
            sorted({k.section for k in all_keys} - SECTION_INTROS.keys())]
    return out


def not_available() -> dict[str, str]:
    """Keys config_check refuses as not in this release: dotted key -> its message."""
    base = Config()
    baseline = set(config_check.check(base))
    out: dict[str, str] = {}
    for dotted, value in PROBES.items():
        section, name = dotted.split(".")
        changed = dataclasses.replace(getattr(base, section), **{name: value})
        config = dataclasses.replace(base, **{section: changed})
        for problem in set(config_check.check(config)) - baseline:
            if problem.startswith(f"{dotted}:") and NOT_YET_MARKER in problem:
                out[dotted] = problem.split(":", 1)[1].strip()
    return out


def _duration(seconds: float) -> str:
    if seconds == 0:
        return '"0"'
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        # "60s" reads better than "1m"; "5m" better than "300s".
        if seconds % size == 0 and seconds >= (2 * size if unit == "m" else size):
            return f'"{int(seconds // size)}{unit}"'
    return f'"{seconds:g}s"'


def _toml(value: Any) -> str:
    if isinstance(value, Secret):
        return _toml(value.reveal())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise ValueError(f"cannot render {value!r}")


def default_text(key: Key) -> str:
    if key.name == "access" and key.section == "upstreams":
        return "none: `[access]` applies"
    if key.kind == "Duration":
        return f"`{_duration(float(key.default))}`"
    if isinstance(key.default, Mapping) and key.default:
        return "see below"
    return f"`{_toml(key.default)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


VALUE_FORMATS = [
    ("string", '`"text"`', "the text as is"),
    ("boolean", "`true` / `false`",
     "`true`, `false`, `1`, `0`, `yes`, `no`, `on`, `off` (any case)"),
    ("integer", "`4`", "`4`"),
    ("duration",
     '`"90s"`, `"15m"`, `"8h"`, `"7d"`, `"1h30m"`, `"1.5h"`, `"500ms"`, `"0"` or `0`; a '
     'bare number needs a unit (`max_age = 8` is refused: `"8h"` or `"8s"`?), as in Go '
     "and oauth2-proxy",
     "the same strings"),
    ("list of strings", '`["a", "b"]`',
     '`a,b` (comma-separated, blanks dropped) or a JSON array `["a","b"]`'),
    ("table", '`{ "X-Name" = "claim" }`', 'a JSON object `{"X-Name": "claim"}`'),
]
VALUE_TYPES = "\n".join(
    ["| type | in `proxy.toml` | in an environment variable |", "|---|---|---|"]
    + [f"| {kind} | {toml} | {env} |" for kind, toml, env in VALUE_FORMATS])

HEADER = f"""\
<!-- Generated by scripts/gen_config_reference.py from proxy/config.py. Do not edit by hand:
     change the dataclasses or the descriptions in the script, then run
     {COMMAND} -->

# Configuration reference

Every key of `proxy.toml`, generated from the configuration dataclasses (`proxy/config.py`)
so it cannot drift from the code; the constraints quoted are the ones
`azure-auth-proxy check-config` enforces (`proxy/config_check.py`). The commented example
`proxy.toml` in the repository shows a whole file.

## Where settings come from

Four layers; a higher one wins, key by key:

1. **command-line flags** of `run` and `check-config`: `--listen`, `--public-url`,
   `--client-id`, `--tenant-id`, `--cloud-instance`, `--log-format`, `--upstream [PATH=]URL`
   (repeatable; replaces every `[[upstreams]]`);
2. **environment variables** (below), `PROXY_UPSTREAMS` included;
3. **the file**: `-c FILE`, else `$PROXY_CONFIG`, else `./proxy.toml`. A file named with `-c`
   or `$PROXY_CONFIG` must exist; the default `./proxy.toml` may be absent, and the proxy then
   runs from the environment and flags alone (containers, Helm values);
4. **defaults** (the tables below).

`azure-auth-proxy check-config [-c FILE] [flags]` validates the result and prints the
effective configuration as JSON with secrets masked, plus `"sources"`: for every key where its
value came from (`"default"`, `"file proxy.toml"`, `"env PROXY_SERVER_LISTEN"`,
`"flag --listen"`). Every problem is one `config error: key: problem` line on stderr and the
exit code is 1. Unknown sections and keys are errors, with the nearest real key as a hint
("did you mean `client_secret`?"), so a typo cannot silently weaken a setting. Values that may
be intended but usually break sign-in (a group name in `groups`) are `config warning: key:
problem` lines on stderr, exit 0. A SIGHUP reload reads the same file and flags again with the
current environment.

## Value types

{VALUE_TYPES}

"secret" marks a value that is masked in `check-config` output and that may come from a file
(below).

## Environment variables

Every key of the sections below can be set as `PROXY_<SECTION>_<KEY>`, upper case:
`PROXY_AZURE_CLIENT_SECRET`, `PROXY_SESSION_STORE`, `PROXY_ACCESS_GROUPS`; `PROXY_UPSTREAMS`
holds the whole `[[upstreams]]` array. A variable replaces the key from the file (and the
key's `_file` twin), even when it is empty. A variable under a section's prefix that names no
key (`PROXY_SESSION_SECERT`) is an error (with a "did you mean" hint); variables with other
prefixes, such as `PROXY_CONFIG`, are ignored.

## Secrets from files

Keys marked "yes" in the `_file` column also accept `<key>_file`: a path whose content is the
value (Docker and Kubernetes secrets), in the file (`client_secret_file =
"/run/secrets/client_secret"`) or the environment (`PROXY_AZURE_CLIENT_SECRET_FILE`). The
content is read as UTF-8 with surrounding whitespace (the trailing newline) removed; for
`secrets_file`, every non-empty line is one key, newest first. Setting a key and its `_file`
twin together, in the file or in the environment, is an error; an unreadable file is an error
naming the key.
"""


def render() -> str:
    all_keys = keys()
    unavailable = not_available()
    parts = [HEADER]
    sections: dict[str, list[Key]] = {}
    for key in all_keys:
        sections.setdefault(key.section, []).append(key)
    for section, section_keys in sections.items():
        title = {"upstreams": "[[upstreams]]", "upstreams.access": "[upstreams.access]"}.get(
            section, f"[{section}]")
        intro = textwrap.fill(SECTION_INTROS[section], width=92, break_on_hyphens=False)
        parts.append(f"## `{title}`\n\n{intro}\n")
        parts.append("| key | type | default | environment variable | `_file` | description |")
        parts.append("|---|---|---|---|---|---|")
        below: list[Key] = []
        for key in section_keys:
            description = DESCRIPTIONS[key.description_key]
            if key.dotted in unavailable:
                description += (" **Not available in this release:** any value but the default "
                                "is refused at startup.")
            env = f"`{key.env}`" if key.env else "—"
            file_ok = "yes" if key.accepts_file else "—"
            parts.append(
                f"| `{key.name}` | {TYPES[key.kind]} | {_cell(default_text(key))} | {env} "
                f"| {file_ok} | {_cell(description)} |")
            if isinstance(key.default, Mapping) and key.default:
                below.append(key)
        for key in below:
            body = "\n".join(f"{_toml(k)} = {_toml(v)}" for k, v in key.default.items())
            parts.append(f"\nDefault of `{key.name}`:\n\n```toml\n[{section}.{key.name}]\n"
                         f"{body}\n```")
        parts.append("")
    if unavailable:
        parts.append("## Not available in this release\n")
        parts.append("These keys exist so that a setting meant for a later release fails\n"
                     "loudly instead of being ignored. Leave them at their defaults; otherwise\n"
                     "`check-config` reports:\n")
        parts += [f"- `{dotted}`: {message}" for dotted, message in unavailable.items()]
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--check"]):
        print("usage: gen_config_reference.py [--check]", file=sys.stderr)
        return 2
    found = problems()
    if found:
        print("gen_config_reference: the configuration reference is incomplete:",
              file=sys.stderr)
        for problem in found:
            print(f"  {problem}", file=sys.stderr)
        return 1
    text = render()
    if args == ["--check"]:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"gen_config_reference: {OUTPUT.relative_to(ROOT)} is out of date; run: "
                  f"{COMMAND}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
