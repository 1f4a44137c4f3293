"""proxy.toml loading (SPEC §3): defaults, every problem named by its key, env overrides,
*_file secrets, durations and redaction."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from proxy.config import (
    DEFAULT_HEADERS,
    AccessPolicyConfig,
    Config,
    Secret,
    UpstreamConfig,
)
from proxy.config_load import from_dict, load, parse_duration, redacted
from proxy.errors import ConfigError

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_GUID = "0b4e8f4e-3a38-4d5c-9a5e-6b1c0d2e3f40"
CLIENT_ID = "c0ffee00-1234-4abc-8def-0123456789ab"
CLIENT_SECRET = "cs~Vx9Qw7Lk2Zp4Rt6Yu8Io0Pa"
SESSION_SECRET = "sess-6f3b1c9e2d7a4f8b0c5e1d9a3b7f2c6e"  # > 32 bytes
NEW_SECRET = "new-a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7"
OLD_SECRET = "old-0f1e2d3c4b5a69788796a5b4c3d2e1f0aa"

Section = dict[str, str | None]  # key -> TOML literal; None removes the key

BASE: dict[str, Section] = {
    "server": {"public_url": '"https://tools.example.com"'},
    "azure": {
        "client_id": f'"{CLIENT_ID}"',
        "client_secret": f'"{CLIENT_SECRET}"',
        "tenant_id": f'"{GUID}"',
    },
    "session": {"secret": f'"{SESSION_SECRET}"'},
}
BASE_UPSTREAMS: list[Section] = [{"url": '"http://127.0.0.1:8080"'}]


def render(overrides: Mapping[str, Section] | None = None,
           upstreams: list[Section] | None = None) -> str:
    """A proxy.toml: the minimal valid config with `overrides` applied per section."""
    sections = {name: dict(keys) for name, keys in BASE.items()}
    for name, keys in (overrides or {}).items():
        target = sections.setdefault(name, {})
        for key, literal in keys.items():
            if literal is None:
                target.pop(key, None)
            else:
                target[key] = literal
    lines: list[str] = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {literal}" for key, literal in keys.items() if literal is not None]
        lines.append("")
    for upstream in BASE_UPSTREAMS if upstreams is None else upstreams:
        lines.append("[[upstreams]]")
        lines += [f"{key} = {lit}" for key, lit in upstream.items() if lit is not None]
        lines.append("")
    return "\n".join(lines)


def load_text(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> Config:
    path = tmp_path / "proxy.toml"
    path.write_text(text, encoding="utf-8")
    return load(path, environ)


def problems_of(tmp_path: Path, text: str,
                environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, environ)
    problems = info.value.problems
    assert problems, "a ConfigError must list at least one problem"
    assert all(isinstance(p, str) and p for p in problems)
    return problems


def problems_of_or_none(tmp_path: Path, text: str) -> list[str]:
    """The problems of a config that may also be valid ([] then)."""
    try:
        load_text(tmp_path, text)
    except ConfigError as exc:
        return exc.problems
    return []


def names(problems: list[str], key: str) -> bool:
    """Some problem line is about `key` ("key: problem")."""
    return any(p.startswith(f"{key}:") for p in problems)


def base_dict() -> dict[str, Any]:
    return {
        "server": {"public_url": "https://tools.example.com"},
        "azure": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "tenant_id": GUID},
        "session": {"secret": SESSION_SECRET},
        "upstreams": [{"url": "http://127.0.0.1:8080"}],
    }


def dict_problems(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_dict(data, environ)
    return info.value.problems


# --- a minimal config and the SPEC §3 defaults ------------------------------------------------


def test_minimal_config_loads_with_spec_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, render())

    s = config.server
    assert s.public_url == "https://tools.example.com"
    assert s.listen == "0.0.0.0:4180"
    assert s.host_port == ("0.0.0.0", 4180)
    assert s.trusted_proxies == ()
    assert s.workers == 1
    assert s.metrics_listen == ""
    assert s.log_format == "text"
    assert s.allowed_redirect_hosts == ()

    a = config.azure
    assert a.client_id == CLIENT_ID
    assert a.client_secret.reveal() == CLIENT_SECRET
    assert a.tenant_id == GUID
    assert a.cloud_instance == "https://login.microsoftonline.com/"
    assert a.connector_id == "azuread"
    assert a.scopes == ("openid", "profile", "email", "offline_access", "User.Read")
    assert a.allowed_tenants == ()
    assert a.allow_any_tenant is False
    assert a.prompt == "" and a.domain_hint == "" and a.graph_url == ""
    assert a.federated_logout is False
    assert a.timeout == 10.0
    assert a.authority == f"https://login.microsoftonline.com/{GUID}"
    assert a.multi_tenant is False

    sess = config.session
    assert sess.secret.reveal() == SESSION_SECRET
    assert sess.secrets == ()
    assert sess.signing_keys == [SESSION_SECRET]
    assert sess.store == "cookie"
    assert sess.cookie_name == "azp_session"
    assert sess.cookie_domain == ""
    assert sess.secure is True
    assert sess.samesite == "lax"
    assert sess.max_age == 28800.0
    assert sess.idle_timeout == 0.0
    assert sess.refresh == 300.0

    assert config.access == AccessPolicyConfig()
    assert config.access.emails == config.access.domains == config.access.groups == ()
    assert config.access.roles == config.access.tenants == ()

    i = config.identity
    assert i.headers == DEFAULT_HEADERS
    assert i.headers["X-Forwarded-User"] == "preferred_username"
    assert i.easy_auth is False and i.pass_access_token is False and i.pass_id_token is False

    assert config.api.accept_bearer is False and config.api.audiences == ()

    assert len(config.upstreams) == 1
    u = config.upstreams[0]
    assert u == UpstreamConfig(url="http://127.0.0.1:8080")
    assert u.path == "/" and u.host == "" and u.public == ()
    assert u.preserve_host is False and u.strip_prefix is False
    assert u.timeout == 60.0
    assert u.access is None

    assert config.redirect_uri == "https://tools.example.com/callback/azuread"


def test_load_accepts_a_str_path(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(render(), encoding="utf-8")
    assert load(str(path)).azure.client_id == CLIENT_ID


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_text(tmp_path, render())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.session.secure = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.upstreams = ()  # type: ignore[misc]


def test_full_config_round_trip(tmp_path: Path) -> None:
    text = render(
        {
            "server": {
                "listen": '"127.0.0.1:8443"',
                "trusted_proxies": '["10.0.0.0/8", "fd00::/8"]',
                "log_format": '"json"',
                "allowed_redirect_hosts": '["*.example.com", "other.example.org"]',
            },
            "azure": {
                "tenant_id": '"organizations"',
                "allowed_tenants": f'["{GUID}", "{OTHER_GUID}"]',
                "prompt": '"select_account"',
                "domain_hint": '"example.com"',
                "timeout": '"30s"',
            },
            "session": {
                "cookie_name": '"_auth"',
                "cookie_domain": '".example.com"',
                "samesite": '"lax"',
                "max_age": '"7d"',
                "refresh": '"1m"',
            },
            "access": {"emails": '["Alice@Example.com"]', "domains": '["example.com"]'},
            "identity": {"headers": '{ "X-User" = "email" }'},
        },
        upstreams=[
            {"path": '"/"', "url": '"http://127.0.0.1:8080"'},
            {
                "path": '"/app"',
                "host": '"app.example.com"',
                "url": '"https://backend.internal.example:8443/base"',
                "public": '["^/healthz$", "^/static/"]',
                "preserve_host": "true",
                "strip_prefix": "true",
                "timeout": '"5m"',
                "access": '{ groups = ["g1"], roles = ["Admin"] }',
            },
        ],
    )
    config = load_text(tmp_path, text)
    assert config.server.host_port == ("127.0.0.1", 8443)
    assert config.server.trusted_proxies == ("10.0.0.0/8", "fd00::/8")
    assert len(config.server.trusted_networks) == 2
    assert config.server.log_format == "json"
    assert config.azure.multi_tenant is True
    assert config.azure.allowed_tenants == (GUID, OTHER_GUID)
    assert config.azure.timeout == 30.0
    assert config.session.max_age == 7 * 86400.0
    assert config.session.refresh == 60.0
    assert config.session.cookie_domain == ".example.com"
    assert config.access.emails == ("Alice@Example.com",)
    assert config.identity.headers == {"X-User": "email"}
    app = config.upstreams[1]
    assert app.path == "/app" and app.host == "app.example.com"
    assert app.public == ("^/healthz$", "^/static/")
    assert app.preserve_host is True and app.strip_prefix is True
    assert app.timeout == 300.0
    assert app.access == AccessPolicyConfig(groups=("g1",), roles=("Admin",))
    assert config.upstreams[0].access is None


@pytest.mark.parametrize("tenant", ["organizations", "common", "Organizations"])
def test_multi_tenant_with_allow_any_tenant_loads(tmp_path: Path, tenant: str) -> None:
    text = render({"azure": {"tenant_id": f'"{tenant}"', "allow_any_tenant": "true"}})
    assert load_text(tmp_path, text).azure.multi_tenant is True


@pytest.mark.parametrize("tenant", ["consumers", "contoso.onmicrosoft.com", GUID.upper()])
def test_other_tenant_forms_load(tmp_path: Path, tenant: str) -> None:
    assert load_text(tmp_path, render({"azure": {"tenant_id": f'"{tenant}"'}})).azure.tenant_id \
        == tenant


def test_loopback_http_with_secure_false_loads(tmp_path: Path) -> None:
    text = render({"server": {"public_url": '"http://127.0.0.1:4180"'},
                   "session": {"secure": "false"}})
    config = load_text(tmp_path, text)
    assert config.session.secure is False
    assert config.redirect_uri == "http://127.0.0.1:4180/callback/azuread"


def test_session_secret_of_exactly_32_bytes_is_enough(tmp_path: Path) -> None:
    config = load_text(tmp_path, render({"session": {"secret": '"' + "k" * 32 + '"'}}))
    assert config.session.signing_keys == ["k" * 32]


# --- each problem is named by its key ---------------------------------------------------------

BAD: list[tuple[str, dict[str, Section], list[Section] | None, str]] = [
    # (id, section overrides, upstreams, key the problem must name)
    ("unknown-server-key", {"server": {"listn": '"0.0.0.0:4180"'}}, None, "server.listn"),
    ("unknown-azure-key", {"azure": {"clientid": '"x"'}}, None, "azure.clientid"),
    ("unknown-section", {"servr": {"listen": '"0.0.0.0:4180"'}}, None, "servr"),
    ("unknown-upstream-key", {}, [{"url": '"http://127.0.0.1:8080"', "pth": '"/"'}],
     "upstreams[0].pth"),
    ("unknown-upstream-access-key", {},
     [{"url": '"http://127.0.0.1:8080"', "access": '{ emailz = ["a@example.com"] }'}],
     "upstreams[0].access.emailz"),
    ("non-secret-key-file", {"azure": {"client_id_file": '"/etc/hostname"'}}, None,
     "azure.client_id_file"),
    ("short-session-secret", {"session": {"secret": '"' + "x" * 31 + '"'}}, None,
     "session.secret"),
    ("missing-session-secret", {"session": {"secret": None}}, None, "session.secret"),
    ("missing-client-id", {"azure": {"client_id": None}}, None, "azure.client_id"),
    ("empty-client-id", {"azure": {"client_id": '""'}}, None, "azure.client_id"),
    ("missing-client-secret", {"azure": {"client_secret": None}}, None, "azure.client_secret"),
    ("missing-public-url", {"server": {"public_url": None}}, None, "server.public_url"),
    ("public-url-not-a-url", {"server": {"public_url": '"not a url"'}}, None,
     "server.public_url"),
    ("public-url-no-scheme", {"server": {"public_url": '"tools.example.com"'}}, None,
     "server.public_url"),
    ("public-url-plain-http-remote", {"server": {"public_url": '"http://tools.example.com"'}},
     None, "server.public_url"),
    ("public-url-with-path", {"server": {"public_url": '"https://tools.example.com/app"'}},
     None, "server.public_url"),
    ("public-url-ftp", {"server": {"public_url": '"ftp://tools.example.com"'}}, None,
     "server.public_url"),
    ("upstream-url-not-a-url", {}, [{"url": '"not a url"'}], "upstreams[0].url"),
    ("upstream-url-ftp", {}, [{"url": '"ftp://127.0.0.1/"'}], "upstreams[0].url"),
    ("upstream-url-missing", {}, [{"path": '"/"'}], "upstreams[0].url"),
    ("upstream-url-query", {}, [{"url": '"http://127.0.0.1:8080/?a=1"'}], "upstreams[0].url"),
    ("upstream-path-no-slash", {}, [{"url": '"http://127.0.0.1:8080"', "path": '"app"'}],
     "upstreams[0].path"),
    ("upstream-timeout-garbage", {}, [{"url": '"http://127.0.0.1:8080"', "timeout": '"soon"'}],
     "upstreams[0].timeout"),
    ("upstream-connect-timeout-zero", {},
     [{"url": '"http://127.0.0.1:8080"', "connect_timeout": '"0s"'}],
     "upstreams[0].connect_timeout"),
    ("upstream-max-connections-zero", {},
     [{"url": '"http://127.0.0.1:8080"', "max_connections": "0"}],
     "upstreams[0].max_connections"),
    ("tls-key-on-http", {},
     [{"url": '"http://127.0.0.1:8080"', "tls_insecure_skip_verify": "true"}],
     "upstreams[0].tls_insecure_skip_verify"),
    ("ca-file-on-http", {}, [{"url": '"http://127.0.0.1:8080"', "ca_file": '"/ca.pem"'}],
     "upstreams[0].ca_file"),
    ("client-key-without-cert", {},
     [{"url": '"https://127.0.0.1:8443"', "client_key_file": '"/k.pem"'}],
     "upstreams[0].client_key_file"),
    ("one-origin-two-tls-settings", {},
     [{"url": '"https://127.0.0.1:8443"', "path": '"/a"'},
      {"url": '"https://127.0.0.1:8443/b"', "path": '"/b"', "server_name": '"b.internal"'}],
     "upstreams[1].ca_file"),
    ("max-age-words", {"session": {"max_age": '"ten minutes"'}}, None, "session.max_age"),
    ("max-age-zero", {"session": {"max_age": '"0"'}}, None, "session.max_age"),
    ("azure-timeout-garbage", {"azure": {"timeout": '"soon"'}}, None, "azure.timeout"),
    ("azure-timeout-negative", {"azure": {"timeout": '"-5s"'}}, None, "azure.timeout"),
    ("azure-timeout-zero", {"azure": {"timeout": '"0s"'}}, None, "azure.timeout"),
    ("workers-string", {"server": {"workers": '"two"'}}, None, "server.workers"),
    ("workers-float", {"server": {"workers": "1.5"}}, None, "server.workers"),
    ("secure-string", {"session": {"secure": '"yes"'}}, None, "session.secure"),
    ("secure-int", {"session": {"secure": "1"}}, None, "session.secure"),
    ("client-id-int", {"azure": {"client_id": "12345"}}, None, "azure.client_id"),
    ("scopes-string", {"azure": {"scopes": '"openid profile"'}}, None, "azure.scopes"),
    ("scopes-no-openid", {"azure": {"scopes": '["profile", "email"]'}}, None, "azure.scopes"),
    ("headers-not-table", {"identity": {"headers": '["X-User"]'}}, None, "identity.headers"),
    ("headers-reserved", {"identity": {"headers": '{ "Host" = "email" }'}}, None,
     "identity.headers"),
    ("tenant-garbage", {"azure": {"tenant_id": '"not a tenant!"'}}, None, "azure.tenant_id"),
    ("tenant-short-guid", {"azure": {"tenant_id": '"72f988bf-86f1-41af"'}}, None,
     "azure.tenant_id"),
    ("organizations-alone", {"azure": {"tenant_id": '"organizations"'}}, None,
     "azure.allowed_tenants"),
    ("common-alone", {"azure": {"tenant_id": '"common"'}}, None, "azure.allowed_tenants"),
    ("allowed-tenants-not-guid",
     {"azure": {"tenant_id": '"organizations"', "allowed_tenants": '["contoso"]'}}, None,
     "azure.allowed_tenants"),
    ("cloud-instance-http", {"azure": {"cloud_instance": '"http://login.example.com/"'}}, None,
     "azure.cloud_instance"),
    ("connector-id-bad", {"azure": {"connector_id": '"a/b"'}}, None, "azure.connector_id"),
    ("samesite-invalid", {"session": {"samesite": '"sideways"'}}, None, "session.samesite"),
    ("samesite-none-insecure",
     {"server": {"public_url": '"http://127.0.0.1:4180"'},
      "session": {"samesite": '"none"', "secure": "false"}}, None, "session.samesite"),
    ("secure-with-http-public-url", {"server": {"public_url": '"http://127.0.0.1:4180"'}},
     None, "session.secure"),
    ("cookie-name-bad", {"session": {"cookie_name": '"my session"'}}, None,
     "session.cookie_name"),
    ("public-regex-bad", {}, [{"url": '"http://127.0.0.1:8080"', "public": '["^/ok$", "("]'}],
     "upstreams[0].public"),
    ("trusted-proxies-bad-cidr", {"server": {"trusted_proxies": '["10.0.0.0/33"]'}}, None,
     "server.trusted_proxies"),
    ("trusted-proxies-garbage", {"server": {"trusted_proxies": '["proxy.internal"]'}}, None,
     "server.trusted_proxies"),
    ("listen-no-port", {"server": {"listen": '"4180"'}}, None, "server.listen"),
    ("listen-port-range", {"server": {"listen": '"0.0.0.0:99999"'}}, None, "server.listen"),
    ("log-format", {"server": {"log_format": '"xml"'}}, None, "server.log_format"),
    ("access-domain-bad", {"access": {"domains": '["not a domain"]'}}, None, "access.domains"),
    ("access-email-bad", {"access": {"emails": '["alice"]'}}, None, "access.emails"),
    ("missing-upstreams", {}, [], "upstreams"),
    ("duplicate-upstream-path", {},
     [{"url": '"http://127.0.0.1:8080"'}, {"url": '"http://127.0.0.1:8081"', "path": '"/"'}],
     "upstreams[1].path"),
]


@pytest.mark.parametrize(("overrides", "upstreams", "key"),
                         [pytest.param(o, u, k, id=i) for i, o, u, k in BAD])
def test_bad_value_is_a_config_error_naming_the_key(
        tmp_path: Path, overrides: dict[str, Section], upstreams: list[Section] | None,
        key: str) -> None:
    problems = problems_of(tmp_path, render(overrides, upstreams))
    assert names(problems, key), problems


def test_same_path_on_different_hosts_is_not_a_duplicate(tmp_path: Path) -> None:
    config = load_text(tmp_path, render(upstreams=[
        {"url": '"http://127.0.0.1:8080"'},
        {"url": '"http://127.0.0.1:8081"', "host": '"app.example.com"'},
    ]))
    assert [u.host for u in config.upstreams] == ["", "app.example.com"]


def test_section_that_is_not_a_table_is_named() -> None:
    data = base_dict()
    data["server"] = "https://tools.example.com"
    assert names(dict_problems(data), "server")


def test_upstreams_that_is_not_an_array_is_named() -> None:
    data = base_dict()
    data["upstreams"] = {"url": "http://127.0.0.1:8080"}
    assert names(dict_problems(data), "upstreams")


def test_upstream_entry_that_is_not_a_table_is_named() -> None:
    data = base_dict()
    data["upstreams"] = ["http://127.0.0.1:8080"]
    problems = dict_problems(data)
    assert any(p.startswith("upstreams[0]") for p in problems), problems


def test_missing_file_is_one_config_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(missing)
    assert len(info.value.problems) == 1
    assert str(missing) in info.value.problems[0]


def test_invalid_toml_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[server\npublic_url = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert len(info.value.problems) == 1
    assert str(path) in info.value.problems[0]
    assert "TOML" in info.value.problems[0]


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(render({"azure": {"prompt": '"s\xe9lect"'}}).encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in info.value.problems[0]


# --- several problems at once -----------------------------------------------------------------


def test_every_semantic_problem_is_reported(tmp_path: Path) -> None:
    text = render(
        {
            "azure": {"client_id": None, "tenant_id": '"not a tenant!"'},
            "session": {"secret": '"short"', "samesite": '"sideways"'},
            "server": {"trusted_proxies": '["10.0.0.0/33"]'},
        },
        upstreams=[{"url": '"not a url"', "public": '["("]'}],
    )
    problems = problems_of(tmp_path, text)
    for key in ("azure.client_id", "azure.tenant_id", "session.secret", "session.samesite",
                "server.trusted_proxies", "upstreams[0].url", "upstreams[0].public"):
        assert names(problems, key), (key, problems)


def test_every_parse_problem_is_reported(tmp_path: Path) -> None:
    text = render(
        {
            "server": {"listn": '"x"', "workers": '"two"'},
            "session": {"secure": '"yes"', "max_age": '"ten minutes"'},
            "servr": {"a": "1"},
        },
        upstreams=[{"url": '"http://127.0.0.1:8080"', "pth": '"/"'}],
    )
    problems = problems_of(tmp_path, text)
    for key in ("server.listn", "server.workers", "session.secure", "session.max_age", "servr",
                "upstreams[0].pth"):
        assert names(problems, key), (key, problems)


def test_unknown_keys_and_semantic_problems_are_reported_together(tmp_path: Path) -> None:
    # SPEC §2: check-config exits 1 "with every error naming its key", so a typo must not
    # hide the other problems until the next run.
    text = render({
        "server": {"listn": '"0.0.0.0:4180"'},
        "azure": {"client_id": None},
        "session": {"secret": '"short"'},
    })
    problems = problems_of(tmp_path, text)
    for key in ("server.listn", "azure.client_id", "session.secret"):
        assert names(problems, key), (key, problems)


NEEDS_SERVER_SIDE: list[tuple[str, dict[str, Section], str]] = [
    ("pass-access-token", {"identity": {"pass_access_token": "true"}},
     "identity.pass_access_token"),
    ("pass-id-token", {"identity": {"pass_id_token": "true"}}, "identity.pass_id_token"),
    ("idle-timeout", {"session": {"idle_timeout": '"30m"'}}, "session.idle_timeout"),
    ("easy-auth-tokens", {"identity": {"easy_auth": "true", "easy_auth_tokens": "true"}},
     "identity.easy_auth_tokens"),
]


@pytest.mark.parametrize(("overrides", "key"),
                         [pytest.param(o, k, id=i) for i, o, k in NEEDS_SERVER_SIDE])
def test_token_features_need_a_server_side_store(
        tmp_path: Path, overrides: dict[str, Section], key: str) -> None:
    lines = [p for p in problems_of(tmp_path, render(overrides)) if p.startswith(f"{key}:")]
    assert lines and "server-side store" in lines[0], lines
    with_store = {**overrides, "session": {**overrides.get("session", {}),
                                           "store": '"memory"'}}
    assert not [p for p in problems_of_or_none(tmp_path, render(with_store))
                if p.startswith(f"{key}:")]


@pytest.mark.parametrize(("session", "key"), [
    ({"store": '"disk"'}, "session.store"),
    ({"store": '"redis"', "redis_url": '"http://x"'}, "session.redis_url"),
    ({"store": '"redis"', "redis_sentinel_master": '"m"'}, "session.redis_sentinels"),
    ({"store": '"redis"', "redis_sentinel_master": '"m"', "redis_sentinels": '["nohost"]'},
     "session.redis_sentinels"),
    ({"store": '"redis"', "redis_sentinel_master": '"m"', "redis_sentinels": '["h:1"]',
      "redis_cluster": "true"}, "session.redis_cluster"),
    ({"store": '"redis"', "redis_ca_file": '"/nonexistent/ca.pem"'}, "session.redis_ca_file"),
    ({"memory_max_sessions": "0"}, "session.memory_max_sessions"),
])
def test_server_side_store_settings_are_checked(tmp_path: Path, session: Section,
                                                key: str) -> None:
    problems = problems_of(tmp_path, render({"session": session}))
    assert any(p.startswith(f"{key}:") for p in problems), problems


@pytest.mark.parametrize(("identity", "key"), [
    ({"easy_auth_tokens": "true"}, "identity.easy_auth_tokens"),
    ({"assertion_header": '"Host"'}, "identity.assertion_header"),
    ({"assertion_header": '"bad header"'}, "identity.assertion_header"),
    ({"assertion_key_file": '"/nonexistent/key.pem"'}, "identity.assertion_key_file"),
])
def test_identity_feature_settings_are_checked(tmp_path: Path, identity: Section,
                                               key: str) -> None:
    assert names(problems_of(tmp_path, render({"identity": identity})), key)


@pytest.mark.parametrize(("server", "key"), [
    ({"workers": "0"}, "server.workers"),
    ({"workers": "1000"}, "server.workers"),
    ({"workers": "2", "listen": '"127.0.0.1:0"'}, "server.workers"),
    ({"worker_stuck_timeout": '"1s"'}, "server.worker_stuck_timeout"),  # beats come every 1 s
    ({"worker_stuck_timeout": '"2h"'}, "server.worker_stuck_timeout"),
])
def test_worker_settings_are_checked(tmp_path: Path, server: Section, key: str) -> None:
    assert names(problems_of(tmp_path, render({"server": server})), key)


@pytest.mark.parametrize(("server", "key"), [
    ({"header_timeout": '"0s"'}, "server.header_timeout"),
    ({"header_timeout": '"-5s"'}, "server.header_timeout"),
    ({"keepalive_timeout": "0"}, "server.keepalive_timeout"),
    ({"keepalive_timeout": '"a while"'}, "server.keepalive_timeout"),
    ({"max_connections": "0"}, "server.max_connections"),
    ({"max_connections": '"many"'}, "server.max_connections"),
])
def test_slow_client_limits_cannot_be_turned_off(tmp_path: Path, server: Section,
                                                 key: str) -> None:
    assert names(problems_of(tmp_path, render({"server": server})), key)


def test_slow_client_limits_default_like_nginx(tmp_path: Path) -> None:
    server = load_text(tmp_path, render({}), {}).server
    assert (server.header_timeout, server.keepalive_timeout, server.max_connections) == (
        20.0, 75.0, 10000)


def test_several_workers_need_shared_state(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, render({"server": {"workers": "2"},
                                             "session": {"store": '"memory"'}}))
    assert names(problems, "session.store") and names(problems, "identity.assertion_key_file")


def test_bearer_needs_allowed_clients(tmp_path: Path) -> None:
    # Entra issues tokens for the API to any app in the tenant: who may call is not optional.
    problems = problems_of(tmp_path, render({"api": {"accept_bearer": "true"}}))
    assert names(problems, "api.allowed_client_ids"), problems
    assert not names(problems, "api.audiences")  # the client ID is implied
    bad = render({"api": {"accept_bearer": "true", "allowed_client_ids": '["my-daemon"]'}})
    assert names(problems_of(tmp_path, bad), "api.allowed_client_ids")
    ok = render({"api": {"accept_bearer": "true", "audiences": f'["api://{CLIENT_ID}"]',
                         "allowed_client_ids": f'["{CLIENT_ID}"]'}})
    assert problems_of_or_none(tmp_path, ok) == []


def test_server_side_stores_are_accepted(tmp_path: Path) -> None:
    for store in ('"memory"', '"redis"'):
        assert problems_of_or_none(tmp_path, render({"session": {"store": store}})) == []


# --- environment overrides: PROXY_<SECTION>_<KEY> ---------------------------------------------


def test_env_string_overrides_the_file(tmp_path: Path) -> None:
    config = load_text(tmp_path, render(), {
        "PROXY_AZURE_CLIENT_ID": OTHER_GUID,
        "PROXY_SERVER_PUBLIC_URL": "https://env.example.com",
        "PROXY_SESSION_COOKIE_NAME": "env_cookie",
    })
    assert config.azure.client_id == OTHER_GUID
    assert config.server.public_url == "https://env.example.com"
    assert config.session.cookie_name == "env_cookie"
    assert config.redirect_uri == "https://env.example.com/callback/azuread"


def test_env_secret_overrides_the_file(tmp_path: Path) -> None:
    config = load_text(tmp_path, render(), {"PROXY_AZURE_CLIENT_SECRET": "env-secret-value"})
    assert config.azure.client_secret.reveal() == "env-secret-value"


@pytest.mark.parametrize(("value", "expected"),
                         [("false", False), ("False", False), ("0", False), ("no", False),
                          ("off", False), ("true", True), ("1", True), ("yes", True)])
def test_env_bool_overrides_the_file(tmp_path: Path, value: str, expected: bool) -> None:
    text = render({"session": {"secure": "true" if not expected else "false"}})
    config = load_text(tmp_path, text, {"PROXY_SESSION_SECURE": value})
    assert config.session.secure is expected


def test_env_bool_garbage_is_named(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, render(), {"PROXY_SESSION_SECURE": "maybe"})
    assert names(problems, "session.secure"), problems


def test_env_int_overrides_the_file(tmp_path: Path) -> None:
    # The file's value alone would be an error; the env value replaces it.
    text = render({"server": {"workers": '"two"'}})
    assert load_text(tmp_path, text, {"PROXY_SERVER_WORKERS": "1"}).server.workers == 1


def test_env_int_garbage_is_named(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, render(), {"PROXY_SERVER_WORKERS": "two"})
    assert names(problems, "server.workers"), problems
    assert not any("not supported" in p for p in problems if p.startswith("server.workers"))


@pytest.mark.parametrize("value", ["openid, email ,User.Read", "openid,email,User.Read,",
                                   '["openid", "email", "User.Read"]'])
def test_env_list_overrides_the_file(tmp_path: Path, value: str) -> None:
    text = render({"azure": {"scopes": '["openid", "profile"]'}})
    config = load_text(tmp_path, text, {"PROXY_AZURE_SCOPES": value})
    assert config.azure.scopes == ("openid", "email", "User.Read")


def test_env_list_for_a_section_missing_from_the_file(tmp_path: Path) -> None:
    config = load_text(tmp_path, render(), {
        "PROXY_ACCESS_EMAILS": "alice@example.com,bob@example.com",
        "PROXY_SERVER_TRUSTED_PROXIES": '["10.0.0.0/8"]',
    })
    assert config.access.emails == ("alice@example.com", "bob@example.com")
    assert config.server.trusted_proxies == ("10.0.0.0/8",)


@pytest.mark.parametrize("value", ["[openid", "[1, 2]", '["openid", null]'])
def test_env_list_garbage_is_named(tmp_path: Path, value: str) -> None:
    problems = problems_of(tmp_path, render(), {"PROXY_AZURE_SCOPES": value})
    assert names(problems, "azure.scopes"), problems


def test_env_dict_overrides_the_file(tmp_path: Path) -> None:
    text = render({"identity": {"headers": '{ "X-Forwarded-User" = "upn" }'}})
    config = load_text(tmp_path, text, {
        "PROXY_IDENTITY_HEADERS": '{"X-Remote-User": "preferred_username", "X-Email": "email"}',
    })
    assert config.identity.headers == {"X-Remote-User": "preferred_username", "X-Email": "email"}


@pytest.mark.parametrize("value", ['{"X-User": 1}', "{not json", '["X-User"]'])
def test_env_dict_garbage_is_named(tmp_path: Path, value: str) -> None:
    problems = problems_of(tmp_path, render(), {"PROXY_IDENTITY_HEADERS": value})
    assert names(problems, "identity.headers"), problems


def test_env_duration_overrides_the_file(tmp_path: Path) -> None:
    text = render({"session": {"max_age": '"8h"'}})
    config = load_text(tmp_path, text, {"PROXY_SESSION_MAX_AGE": "1h30m",
                                        "PROXY_AZURE_TIMEOUT": "90s"})
    assert config.session.max_age == 5400.0
    assert config.azure.timeout == 90.0


def test_env_can_fix_a_missing_required_key(tmp_path: Path) -> None:
    text = render({"azure": {"client_id": None, "client_secret": None}})
    config = load_text(tmp_path, text, {"PROXY_AZURE_CLIENT_ID": CLIENT_ID,
                                        "PROXY_AZURE_CLIENT_SECRET": CLIENT_SECRET})
    assert config.azure.client_id == CLIENT_ID
    assert config.azure.client_secret.reveal() == CLIENT_SECRET


@pytest.mark.parametrize("var", ["PROXY_AZURE_CLIENTID", "PROXY_SESSION_SECRT",
                                 "PROXY_SERVER_LISTN", "PROXY_AZURE_CLIENT_ID_FILE"])
def test_unknown_env_key_is_an_error_naming_the_variable(tmp_path: Path, var: str) -> None:
    problems = problems_of(tmp_path, render(), {var: "x"})
    assert names(problems, var), problems


def test_env_outside_section_prefixes_is_ignored(tmp_path: Path) -> None:
    environ = {
        "PROXY_CONFIG": "/etc/azure-auth-proxy/proxy.toml",
        "PROXY_FOO": "bar",
        "PROXY_SERVERS_LISTEN": "x",
        "HTTP_PROXY": "http://proxy.example.com:3128",
        "proxy_azure_client_id": "lower-case-is-not-ours",
        "PATH": "/usr/bin",
    }
    assert load_text(tmp_path, render(), environ) == load_text(tmp_path, render(), {})


def test_environ_defaults_to_none(tmp_path: Path) -> None:
    data = base_dict()
    assert from_dict(data).azure.client_id == CLIENT_ID
    assert from_dict(data, None) == from_dict(data, {})


# --- *_file secrets ---------------------------------------------------------------------------


def write_secret(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def test_client_secret_file_in_toml(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "client_secret", "file-client-secret\n")
    text = render({"azure": {"client_secret": None, "client_secret_file": f'"{path}"'}})
    assert load_text(tmp_path, text).azure.client_secret.reveal() == "file-client-secret"


def test_session_secret_file_in_toml(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "session_secret", SESSION_SECRET + "\n")
    text = render({"session": {"secret": None, "secret_file": f'"{path}"'}})
    config = load_text(tmp_path, text)
    assert config.session.secret.reveal() == SESSION_SECRET
    assert config.session.signing_keys == [SESSION_SECRET]


def test_secrets_file_one_per_line_newest_first(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "keys", f"{NEW_SECRET}\n{OLD_SECRET}\n")
    text = render({"session": {"secret": None, "secrets_file": f'"{path}"'}})
    config = load_text(tmp_path, text)
    assert [s.reveal() for s in config.session.secrets] == [NEW_SECRET, OLD_SECRET]
    assert config.session.signing_keys == [OLD_SECRET, NEW_SECRET]


def test_client_secret_file_from_env(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "client_secret", "env-file-secret\n")
    text = render({"azure": {"client_secret": None}})
    config = load_text(tmp_path, text, {"PROXY_AZURE_CLIENT_SECRET_FILE": str(path)})
    assert config.azure.client_secret.reveal() == "env-file-secret"


def test_client_secret_file_from_env_replaces_the_file_value(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "client_secret", "env-file-secret\n")
    config = load_text(tmp_path, render(), {"PROXY_AZURE_CLIENT_SECRET_FILE": str(path)})
    assert config.azure.client_secret.reveal() == "env-file-secret"


def test_client_secret_from_env_replaces_a_file_key(tmp_path: Path) -> None:
    text = render({"azure": {"client_secret": None,
                             "client_secret_file": f'"{tmp_path / "missing"}"'}})
    config = load_text(tmp_path, text, {"PROXY_AZURE_CLIENT_SECRET": "from-env"})
    assert config.azure.client_secret.reveal() == "from-env"


def test_session_secret_file_from_env(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "session_secret", SESSION_SECRET + "\n")
    text = render({"session": {"secret": None}})
    config = load_text(tmp_path, text, {"PROXY_SESSION_SECRET_FILE": str(path)})
    assert config.session.secret.reveal() == SESSION_SECRET


def test_missing_secret_file_in_toml_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    text = render({"azure": {"client_secret": None, "client_secret_file": f'"{missing}"'}})
    problems = problems_of(tmp_path, text)
    assert names(problems, "azure.client_secret_file"), problems


def test_missing_secret_file_from_env_is_named(tmp_path: Path) -> None:
    text = render({"session": {"secret": None}})
    problems = problems_of(tmp_path, text,
                           {"PROXY_SESSION_SECRET_FILE": str(tmp_path / "nope")})
    assert names(problems, "session.secret_file"), problems


def test_secret_and_secret_file_together_is_an_error(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "client_secret", "file-client-secret\n")
    text = render({"azure": {"client_secret_file": f'"{path}"'}})
    problems = problems_of(tmp_path, text)
    assert any(p.startswith(("azure.client_secret_file:", "azure.client_secret:"))
               and "client_secret_file" in p for p in problems), problems


def test_secret_and_secret_file_together_in_env_is_an_error(tmp_path: Path) -> None:
    # Like the file case: two sources for one secret must be refused, not resolved by
    # whichever variable the environment happens to list last.
    path = write_secret(tmp_path, "client_secret", "file-client-secret\n")
    text = render({"azure": {"client_secret": None}})
    problems = problems_of(tmp_path, text, {"PROXY_AZURE_CLIENT_SECRET": "env-client-secret",
                                            "PROXY_AZURE_CLIENT_SECRET_FILE": str(path)})
    assert any(p.startswith(("azure.client_secret_file:", "azure.client_secret:",
                             "PROXY_AZURE_CLIENT_SECRET"))
               for p in problems), problems


def test_binary_secret_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    # "32 random bytes" is exactly what `head -c 32 /dev/urandom > secret` produces.
    path = tmp_path / "session_secret"
    path.write_bytes(bytes(range(128, 192)))
    text = render({"session": {"secret": None, "secret_file": f'"{path}"'}})
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    assert names(info.value.problems, "session.secret_file"), info.value.problems


def test_secrets_rotation_gives_signing_keys_oldest_first(tmp_path: Path) -> None:
    text = render({"session": {"secret": None,
                               "secrets": f'["{NEW_SECRET}", "{OLD_SECRET}"]'}})
    config = load_text(tmp_path, text)
    assert [s.reveal() for s in config.session.secrets] == [NEW_SECRET, OLD_SECRET]
    assert config.session.signing_keys == [OLD_SECRET, NEW_SECRET]


def test_secrets_from_env_comma_separated(tmp_path: Path) -> None:
    text = render({"session": {"secret": None}})
    config = load_text(tmp_path, text, {"PROXY_SESSION_SECRETS": f"{NEW_SECRET},{OLD_SECRET}"})
    assert config.session.signing_keys == [OLD_SECRET, NEW_SECRET]


def test_secret_and_secrets_together_is_an_error(tmp_path: Path) -> None:
    text = render({"session": {"secrets": f'["{NEW_SECRET}", "{OLD_SECRET}"]'}})
    assert names(problems_of(tmp_path, text), "session.secrets")


def test_short_key_among_secrets_is_an_error(tmp_path: Path) -> None:
    text = render({"session": {"secret": None, "secrets": f'["{NEW_SECRET}", "old"]'}})
    problems = problems_of(tmp_path, text)
    assert any(p.startswith(("session.secret:", "session.secrets:")) for p in problems), problems


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("15m", 900.0), ("8h", 28800.0), ("7d", 604800.0), ("1h30m", 5400.0),
    ("1d12h", 129600.0), ("0", 0.0), ("0s", 0.0), ("500ms", 0.5), ("1.5h", 5400.0),
    (0, 0.0), (0.0, 0.0),
])
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", [
    "-5s", "-1", "ten minutes", "", "15x", "h", "s15", "5s-", "1h 30m extra", -1, -0.5,
    True, False, None, [], float("nan"), float("inf"), 90, 2.5, 8, "8",
], ids=repr)
def test_parse_duration_rejects_garbage(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_nan_duration_in_toml_is_named(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, render({"session": {"max_age": "nan"}}))
    assert names(problems, "session.max_age"), problems


def test_durations_in_toml(tmp_path: Path) -> None:
    text = render({"session": {"max_age": '"1h30m"', "refresh": '"90s"'},
                   "azure": {"timeout": '"15s"'}},
                  upstreams=[{"url": '"http://127.0.0.1:8080"', "timeout": '"15m"'}])
    config = load_text(tmp_path, text)
    assert config.session.max_age == 5400.0
    assert config.session.refresh == 90.0
    assert config.azure.timeout == 15.0
    assert config.upstreams[0].timeout == 900.0
    assert not math.isnan(config.session.max_age)


# --- secrets never show -----------------------------------------------------------------------


def rotated_config(tmp_path: Path) -> Config:
    return load_text(tmp_path, render({"session": {
        "secret": None, "secrets": f'["{NEW_SECRET}", "{OLD_SECRET}"]',
        "redis_url": '"redis://:hunter2-redis-password@127.0.0.1:6379/0"',
    }}))


def test_redacted_masks_every_secret(tmp_path: Path) -> None:
    for config in (load_text(tmp_path, render()), rotated_config(tmp_path)):
        out = redacted(config)
        dumped = json.dumps(out)
        for secret in (CLIENT_SECRET, SESSION_SECRET, NEW_SECRET, OLD_SECRET, "hunter2"):
            assert secret not in dumped
        assert out["azure"]["client_secret"] == "********"
        assert out["azure"]["client_id"] == CLIENT_ID
        assert out["server"]["public_url"] == "https://tools.example.com"
        assert out["session"]["cookie_name"] == "azp_session"
        assert out["upstreams"][0]["url"] == "http://127.0.0.1:8080"


def test_redacted_shape(tmp_path: Path) -> None:
    plain = redacted(load_text(tmp_path, render()))
    assert plain["session"]["secret"] == "********"
    assert plain["session"]["secrets"] == []
    assert plain["azure"]["scopes"] == ["openid", "profile", "email", "offline_access",
                                        "User.Read"]
    assert plain["session"]["max_age"] == 28800.0
    rotated = redacted(rotated_config(tmp_path))
    assert rotated["session"]["secret"] == ""
    assert rotated["session"]["secrets"] == ["********", "********"]
    assert rotated["session"]["redis_url"] == "********"


def test_repr_never_shows_secrets(tmp_path: Path) -> None:
    for config in (load_text(tmp_path, render()), rotated_config(tmp_path)):
        shown = " ".join([repr(config), str(config), repr(config.azure), repr(config.session),
                          f"{config.azure.client_secret}", str(config.session.secrets)])
        for secret in (CLIENT_SECRET, SESSION_SECRET, NEW_SECRET, OLD_SECRET, "hunter2"):
            assert secret not in shown


def test_secret_object() -> None:
    secret = Secret("s3cr3t-value")
    assert secret.reveal() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(secret) and "s3cr3t-value" not in str(secret)
    assert secret == Secret("s3cr3t-value") and secret != Secret("other")
    assert secret != "s3cr3t-value"
    assert bool(secret) and not Secret("")
    assert len({secret, Secret("s3cr3t-value")}) == 1


def test_problems_never_echo_a_secret(tmp_path: Path) -> None:
    short = "tiny-session-key"
    text = render({"session": {"secret": f'"{short}"', "samesite": '"sideways"'},
                   "azure": {"client_id": None}})
    problems = problems_of(tmp_path, text, {"PROXY_AZURE_CLIENT_SECRET": "env-only-secret-99"})
    assert names(problems, "session.secret")
    joined = "\n".join(problems)
    assert short not in joined and "env-only-secret-99" not in joined
