"""Where config comes from (issue 12 item 5): defaults < proxy.toml < PROXY_* env < flags,
PROXY_UPSTREAMS, no file at all; what check-config catches (item 6); the parser table and
read-only config objects (issue 13 item 4)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from proxy.config import DEFAULT_HEADERS, SECTIONS, Config, UpstreamConfig
from proxy.config_load import ConfigSource, Loaded, build
from proxy.config_values import SCHEMAS, schema
from proxy.errors import ConfigError

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
GROUP = "0b4e8f4e-3a38-4d5c-9a5e-6b1c0d2e3f40"
CLIENT_ID = "c0ffee00-1234-4abc-8def-0123456789ab"
CLIENT_SECRET = "cs~Vx9Qw7Lk2Zp4Rt6Yu8Io0Pa-sources"
SESSION_SECRET = "sess-6f3b1c9e2d7a4f8b0c5e1d9a3b7f2c6e-sources"

FILE = f"""\
[server]
listen = "127.0.0.1:4000"
public_url = "https://file.example.com"
log_level = "debug"

[azure]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
tenant_id = "{GUID}"

[session]
secret = "{SESSION_SECRET}"
cookie_name = "file_cookie"

[[upstreams]]
url = "http://127.0.0.1:8080"
"""

# A complete configuration from the environment alone (a container with no file).
ENV: dict[str, str] = {
    "PROXY_SERVER_PUBLIC_URL": "https://env.example.com",
    "PROXY_AZURE_CLIENT_ID": CLIENT_ID,
    "PROXY_AZURE_CLIENT_SECRET": CLIENT_SECRET,
    "PROXY_AZURE_TENANT_ID": GUID,
    "PROXY_SESSION_SECRET": SESSION_SECRET,
    "PROXY_UPSTREAMS": '[{"url": "http://127.0.0.1:8081", "path": "/"}]',
}


def base() -> dict[str, Any]:
    return {
        "server": {"public_url": "https://tools.example.com"},
        "azure": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "tenant_id": GUID},
        "session": {"secret": SESSION_SECRET},
        "upstreams": [{"url": "http://127.0.0.1:8080"}],
    }


def with_(section: str, **values: Any) -> dict[str, Any]:
    data = base()
    data.setdefault(section, {}).update(values)
    return data


def problems(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build(data, environ)
    return info.value.problems


def one_line(found: list[str], key: str) -> str:
    lines = [p for p in found if p.startswith(f"{key}:")]
    assert len(lines) == 1, (key, found)
    return lines[0]


def file_source(tmp_path: Path, flags: tuple[tuple[str, str, str], ...] = ()) -> ConfigSource:
    path = tmp_path / "proxy.toml"
    path.write_text(FILE, encoding="utf-8")
    return ConfigSource(str(path), flags=flags)


# --- precedence: flags > env > file > defaults --------------------------------------------------


def test_each_layer_wins_over_the_ones_below_key_by_key(tmp_path: Path) -> None:
    source = file_source(tmp_path, flags=(("server.listen", "127.0.0.1:6000", "--listen"),))
    loaded = source.read({"PROXY_SERVER_LISTEN": "127.0.0.1:5000",
                          "PROXY_SERVER_PUBLIC_URL": "https://env.example.com"})
    server = loaded.config.server
    assert server.listen == "127.0.0.1:6000"  # flag over env over file
    assert server.public_url == "https://env.example.com"  # env over file
    assert server.log_level == "debug"  # file over default
    assert server.log_format == "text"  # default
    assert loaded.config.session.cookie_name == "file_cookie"
    assert loaded.sources["server.listen"] == "flag --listen"
    assert loaded.sources["server.public_url"] == "env PROXY_SERVER_PUBLIC_URL"
    assert loaded.sources["server.log_level"] == f"file {tmp_path / 'proxy.toml'}"
    assert loaded.sources["server.log_format"] == "default"
    assert loaded.sources["upstreams"] == f"file {tmp_path / 'proxy.toml'}"


def test_sources_cover_every_key_and_never_hold_a_value(tmp_path: Path) -> None:
    loaded = file_source(tmp_path).read({"PROXY_SESSION_SECRET": SESSION_SECRET + "-env"})
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"{section}.{f.name}" in loaded.sources
    for f in dataclasses.fields(UpstreamConfig):
        assert f"upstreams[0].{f.name}" in loaded.sources
    shown = json.dumps(dict(loaded.sources))
    assert SESSION_SECRET not in shown and CLIENT_SECRET not in shown
    assert loaded.sources["session.secret"] == "env PROXY_SESSION_SECRET"


def test_a_flag_is_parsed_like_an_env_value_and_checked_by_its_key(tmp_path: Path) -> None:
    source = file_source(tmp_path, flags=(("server.log_format", "xml", "--log-format"),))
    with pytest.raises(ConfigError) as info:
        source.read({})
    assert info.value.problems == ["server.log_format: 'xml' must be one of ['text', 'json']"]


def test_the_upstream_flag_replaces_env_and_file_upstreams(tmp_path: Path) -> None:
    flag = json.dumps([{"url": "http://127.0.0.1:9001"},
                       {"path": "/api", "url": "http://127.0.0.1:9002"}])
    source = file_source(tmp_path, flags=(("upstreams", flag, "--upstream"),))
    loaded = source.read({"PROXY_UPSTREAMS": '[{"url": "http://127.0.0.1:8081"}]'})
    assert [(u.path, u.url) for u in loaded.config.upstreams] == [
        ("/", "http://127.0.0.1:9001"), ("/api", "http://127.0.0.1:9002")]
    assert loaded.sources["upstreams"] == "flag --upstream"
    assert loaded.sources["upstreams[1].path"] == "flag --upstream"


def test_a_secret_file_names_its_layer(tmp_path: Path) -> None:
    secret = tmp_path / "client_secret"
    secret.write_text(CLIENT_SECRET + "-from-file\n", encoding="utf-8")
    loaded = file_source(tmp_path).read({"PROXY_AZURE_CLIENT_SECRET_FILE": str(secret)})
    assert loaded.config.azure.client_secret.reveal() == CLIENT_SECRET + "-from-file"
    assert loaded.sources["azure.client_secret"] == "env PROXY_AZURE_CLIENT_SECRET_FILE"


# --- no file at all ---------------------------------------------------------------------------


def test_environment_alone_is_enough_when_the_default_file_is_missing(tmp_path: Path) -> None:
    source = ConfigSource(str(tmp_path / "proxy.toml"), required=False)
    loaded = source.read(ENV)
    assert loaded.config.server.public_url == "https://env.example.com"
    assert loaded.config.upstreams[0].url == "http://127.0.0.1:8081"
    assert loaded.sources["upstreams"] == "env PROXY_UPSTREAMS"
    assert loaded.sources["upstreams[0].url"] == "env PROXY_UPSTREAMS"


def test_a_named_file_that_is_missing_is_still_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        ConfigSource(str(missing)).read(ENV)
    (line,) = info.value.problems
    assert line.startswith(f"{missing}: cannot read config file")


def test_an_incomplete_environment_without_a_file_names_keys_and_the_file(
        tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "PROXY_AZURE_CLIENT_ID"}
    source = ConfigSource(str(tmp_path / "proxy.toml"), required=False)
    with pytest.raises(ConfigError) as info:
        source.read(env)
    found = info.value.problems
    assert one_line(found, "azure.client_id").endswith("(client) ID)")
    assert one_line(found, str(tmp_path / "proxy.toml")).endswith("$PROXY_CONFIG)")
    assert len(found) == 2


def test_nothing_configured_at_all_is_one_line_about_the_file(tmp_path: Path) -> None:
    source = ConfigSource(str(tmp_path / "proxy.toml"), required=False)
    with pytest.raises(ConfigError) as info:
        source.read({"PROXY_CONFIG": "", "HOME": "/root"})
    (line,) = info.value.problems
    assert line.startswith(f"{tmp_path / 'proxy.toml'}: not found")


# --- PROXY_UPSTREAMS --------------------------------------------------------------------------


def test_proxy_upstreams_as_a_toml_array_with_a_route_policy() -> None:
    data = base()
    del data["upstreams"]
    text = (f'[{{ url = "http://127.0.0.1:8082", path = "/admin", timeout = "15s", '
            f'access = {{ groups = ["{GROUP}"] }} }}]')
    config = build(data, {"PROXY_UPSTREAMS": text}).config
    (upstream,) = config.upstreams
    assert (upstream.url, upstream.path, upstream.timeout) == ("http://127.0.0.1:8082",
                                                               "/admin", 15.0)
    assert upstream.access is not None and upstream.access.groups == (GROUP,)


def test_proxy_upstreams_replaces_the_files_array() -> None:
    config = build(base(), {"PROXY_UPSTREAMS": '[{"url": "http://127.0.0.1:8083"}]'}).config
    assert [u.url for u in config.upstreams] == ["http://127.0.0.1:8083"]


@pytest.mark.parametrize(("value", "expected"), [
    ("not an array", "PROXY_UPSTREAMS: must be a JSON array of objects or a TOML array"),
    ('{"url": "http://127.0.0.1:1"}', "PROXY_UPSTREAMS: must be an array of tables"),
    ('["http://127.0.0.1:1"]', "upstreams[0]: must be a table"),
    ('[{"ulr": "http://127.0.0.1:1"}]', "upstreams[0].ulr: unknown key; did you mean `url`?"),
])
def test_bad_proxy_upstreams_is_one_line(value: str, expected: str) -> None:
    found = problems(base(), {"PROXY_UPSTREAMS": value})
    assert any(p.startswith(expected) for p in found), found


def test_per_upstream_variables_do_not_exist() -> None:
    found = problems(base(), {"PROXY_UPSTREAMS_0_URL": "http://127.0.0.1:1"})
    assert one_line(found, "PROXY_UPSTREAMS_0_URL").endswith("array of upstream tables")


# --- near-miss keys ---------------------------------------------------------------------------


def test_a_near_miss_key_in_the_file_gets_a_hint() -> None:
    data = base()
    data["azure"]["client_secert"] = data["azure"].pop("client_secret")
    found = problems(data)
    assert one_line(found, "azure.client_secert") == (
        "azure.client_secert: unknown key; did you mean `client_secret`?")


def test_a_near_miss_env_variable_gets_a_hint() -> None:
    found = problems(base(), {"PROXY_SESSION_SECERT": SESSION_SECRET})
    assert one_line(found, "PROXY_SESSION_SECERT") == (
        "PROXY_SESSION_SECERT: no key session.secert exists; did you mean "
        "PROXY_SESSION_SECRET?")
    assert SESSION_SECRET not in "\n".join(found)


def test_a_near_miss_section_and_file_twin_get_hints() -> None:
    data = base()
    data["sesion"] = {"cookie_name": "x"}
    data["azure"]["client_secret_fil"] = "/run/secrets/x"
    found = problems(data)
    assert one_line(found, "sesion") == "sesion: unknown section; did you mean `session`?"
    assert one_line(found, "azure.client_secret_fil").endswith(
        "did you mean `client_secret_file`?")


def test_a_far_miss_gets_no_guess() -> None:
    found = problems(with_("server", colour="blue"))
    assert one_line(found, "server.colour") == "server.colour: unknown key"


# --- what used to pass check-config and break sign-in ----------------------------------------


@pytest.mark.parametrize(("section", "key", "value"), [
    ("session", "max_age", 8), ("session", "refresh", 300), ("azure", "timeout", 10),
    ("server", "drain_timeout", 2.5), ("server", "header_timeout", 20),
])
def test_a_duration_without_a_unit_is_refused_with_the_fix(section: str, key: str,
                                                          value: float) -> None:
    line = one_line(problems(with_(section, **{key: value})), f"{section}.{key}")
    assert f'write "{value:g}s" for seconds' in line and f'"{value:g}h"' in line


def test_zero_needs_no_unit() -> None:
    config = build(with_("session", idle_timeout=0, store="memory")).config
    assert config.session.idle_timeout == 0.0


def test_a_client_id_that_is_not_a_guid_is_refused() -> None:
    line = one_line(problems(with_("azure", client_id="my-proxy-app")), "azure.client_id")
    assert "'my-proxy-app' must be the Application (client) ID, a GUID" in line


@pytest.mark.parametrize(("url", "problem"), [
    ("https://tools example.com", "must not contain spaces"),
    (" https://tools.example.com", "must not contain spaces"),
    ("https://[::1", "is not a URL"),
    ("https://-tools-.example.com", "has no valid host name"),
    ("https://tools_x.example.com", "has no valid host name"),
    ("https://", "must be an absolute http(s) URL"),
])
def test_a_bad_public_url_is_one_line_naming_the_key(url: str, problem: str) -> None:
    found = problems(with_("server", public_url=url))
    assert one_line(found, "server.public_url") == f"server.public_url: {url!r} {problem}"


def test_an_unparseable_public_url_with_a_cookie_domain_is_still_one_line() -> None:
    data = with_("server", public_url="https://[::1")
    data["session"]["cookie_domain"] = "example.com"
    found = problems(data)
    assert one_line(found, "server.public_url")
    assert not any(p.startswith("session.cookie_domain") for p in found), found


@pytest.mark.parametrize("url", ["https://tools.example.com", "http://127.0.0.1:4180",
                                 "http://localhost:4180", "http://[::1]:4180"])
def test_good_public_urls_still_pass(url: str) -> None:
    data = with_("server", public_url=url)
    data["session"]["secure"] = url.startswith("https")
    assert build(data).config.server.public_url == url


def test_a_group_name_is_a_warning_not_an_error() -> None:
    data = with_("access", groups=["Admins", GROUP])
    data["upstreams"][0]["access"] = {"groups": ["CONTOSO\\ops"]}
    loaded = build(data)
    assert loaded.warnings == (
        "access.groups: 'Admins' is not a group object ID (GUID); Entra sends object IDs "
        "unless the app registration emits sAMAccountName or cloud display names "
        "(docs/configuration.md), so this rule matches nobody otherwise",
        "upstreams[0].access.groups: 'CONTOSO\\\\ops' is not a group object ID (GUID); Entra "
        "sends object IDs unless the app registration emits sAMAccountName or cloud display "
        "names (docs/configuration.md), so this rule matches nobody otherwise",
    )


def test_group_object_ids_give_no_warning() -> None:
    assert build(with_("access", groups=[GROUP, GROUP.upper()])).warnings == ()


# --- the parser table and read-only config ----------------------------------------------------


def test_every_config_field_has_a_parser() -> None:
    for cls in (*SECTIONS.values(), UpstreamConfig):
        spec = SCHEMAS[cls]
        assert set(spec) == {f.name for f in dataclasses.fields(cls)}
        for field in spec.values():
            assert (field.parse is None) != (field.nested is None), field


def test_a_field_type_without_a_parser_fails_when_the_schema_is_built() -> None:
    @dataclasses.dataclass(frozen=True)
    class Odd:
        ratio: float = 0.5

    with pytest.raises(KeyError):
        schema(Odd)


def test_secret_fields_come_from_the_types() -> None:
    secret = {(cls.__name__, name) for cls, spec in SCHEMAS.items()
              for name, field in spec.items() if field.secret}
    assert secret == {("AzureConfig", "client_secret"), ("AzureConfig", "identity_header"),
                      ("SessionConfig", "secret"),
                      ("SessionConfig", "secrets"), ("SessionConfig", "redis_url"),
                      ("SessionConfig", "redis_sentinel_password"),
                      ("ServerConfig", "admin_token")}


def test_identity_headers_are_read_only_all_the_way_down() -> None:
    env = {"PROXY_IDENTITY_HEADERS": '{"X-Who": "preferred_username"}'}
    for config in (Config(), build(base()).config, build(base(), env).config):
        with pytest.raises(TypeError):
            config.identity.headers["X-Evil"] = "oid"  # type: ignore[index]
    with pytest.raises(TypeError):
        DEFAULT_HEADERS["X-Evil"] = "oid"  # type: ignore[index]
    assert build(base(), env).config.identity.headers == {"X-Who": "preferred_username"}


def test_a_config_source_survives_pickling_for_spawned_workers(tmp_path: Path) -> None:
    source = file_source(tmp_path, flags=(("server.listen", "127.0.0.1:6001", "--listen"),))
    again = pickle.loads(pickle.dumps(source))
    assert again == source
    loaded: Loaded = again.read({})
    assert loaded.config.server.listen == "127.0.0.1:6001"


def test_a_near_miss_is_the_only_line_about_the_key_it_misses() -> None:
    data = base()
    data["azure"]["client_secert"] = data["azure"].pop("client_secret")
    data["upstreams"] = [{"ulr": "http://127.0.0.1:8080"}]
    assert problems(data) == ["azure.client_secert: unknown key; did you mean `client_secret`?",
                              "upstreams[0].ulr: unknown key; did you mean `url`?"]
