"""The command line (SPEC §2) in a real subprocess: exit codes 0 ok / 1 bad config / 2 bad
usage, `config error: <key>: <problem>` lines on stderr, never a traceback, never a secret."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "c0ffee00-1234-4abc-8def-0123456789ab"
CLIENT_SECRET = "cli-client-secret-Qw7Lk2Zp4Rt6"
SESSION_SECRET = "cli-session-secret-6f3b1c9e2d7a4f8b0c5e"
ENV_SECRET = "env-only-client-secret-93kd8Zx"

AZURE_NO_SECRET = f"""\
[azure]
client_id = "{CLIENT_ID}"
tenant_id = "{GUID}"
"""
UPSTREAM = """\
[[upstreams]]
url = "http://127.0.0.1:8080"
"""


def good_toml(cookie_name: str = "azp_session", listen: str = "0.0.0.0:4180") -> str:
    return f"""\
[server]
listen = "{listen}"
public_url = "https://tools.example.com"

{AZURE_NO_SECRET}client_secret = "{CLIENT_SECRET}"

[session]
secret = "{SESSION_SECRET}"
cookie_name = "{cookie_name}"

{UPSTREAM}"""


BAD_TOML = f"""\
[server]
public_url = "https://tools.example.com"

[azure]
tenant_id = "{GUID}"
client_secret = "{CLIENT_SECRET}"

[session]
secret = "too-short"
samesite = "sideways"

[[upstreams]]
url = "http://127.0.0.1:8080"
public = ["("]
"""


def cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m proxy ARGS` with a clean environment: no PROXY_* from the caller."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "proxy", *args], cwd=cwd, env=base,
                          capture_output=True, text=True, timeout=timeout, check=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


def effective(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# --- check-config -----------------------------------------------------------------------------


def test_check_config_good_prints_redacted_json(tmp_path: Path) -> None:
    path = write(tmp_path / "good.toml", good_toml())
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    data = effective(result)
    no_traceback(result)
    assert data["azure"]["client_id"] == CLIENT_ID
    assert data["azure"]["client_secret"] == "********"
    assert data["session"]["secret"] == "********"
    assert data["session"]["cookie_name"] == "azp_session"
    assert data["session"]["max_age"] == 28800.0
    assert data["upstreams"][0]["url"] == "http://127.0.0.1:8080"
    for secret in (CLIENT_SECRET, SESSION_SECRET):
        assert secret not in result.stdout and secret not in result.stderr


def test_check_config_long_option(tmp_path: Path) -> None:
    path = write(tmp_path / "good.toml", good_toml(cookie_name="long_opt"))
    data = effective(cli("check-config", "--config", str(path), cwd=tmp_path))
    assert data["session"]["cookie_name"] == "long_opt"


def test_check_config_bad_lists_every_problem_by_key(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", BAD_TOML)
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    no_traceback(result)
    lines = stderr_lines(result)
    assert lines
    assert all(line.startswith("config error: ") for line in lines), lines
    for key in ("azure.client_id", "session.secret", "session.samesite", "upstreams[0].public"):
        assert any(line.startswith(f"config error: {key}:") for line in lines), (key, lines)
    assert CLIENT_SECRET not in result.stdout + result.stderr
    assert "too-short" not in result.stdout + result.stderr
    assert result.stdout.strip() == ""


def with_lines(text: str, header: str, lines: str) -> str:
    """`lines` added to the `header` table, or a new table at the end."""
    if f"{header}\n" in text:
        return text.replace(f"{header}\n", f"{header}\n{lines}\n", 1)
    return f"{text}\n{header}\n{lines}\n"


@pytest.mark.parametrize(("header", "lines", "key"), [
    ("[server]", 'listn = "0.0.0.0:4180"', "server.listn"),
    ("[servr]", 'listen = "0.0.0.0:4180"', "servr"),
    ("[server]", 'workers = "two"', "server.workers"),
    ("[session]", 'secure = "yes"', "session.secure"),
    ("[session]", 'max_age = "ten minutes"', "session.max_age"),
    ("[session]", 'store = "disk"', "session.store"),
    ("[identity]", "easy_auth_tokens = true", "identity.easy_auth_tokens"),
])
def test_check_config_problem_names_key(tmp_path: Path, header: str, lines: str,
                                        key: str) -> None:
    text = with_lines(good_toml(), header, lines)
    path = write(tmp_path / "bad.toml", text)
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1, (text, result.stdout, result.stderr)
    no_traceback(result)
    lines_out = stderr_lines(result)
    assert all(line.startswith("config error: ") for line in lines_out), lines_out
    assert any(line.startswith(f"config error: {key}:") for line in lines_out), (key, lines_out)


def test_check_config_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = cli("check-config", "-c", str(missing), cwd=tmp_path)
    assert result.returncode == 1
    no_traceback(result)
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("config error: ")
    assert str(missing) in lines[0]
    assert result.stdout.strip() == ""


def test_check_config_invalid_toml_is_one_clear_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.toml", "[server\npublic_url = 1\n")
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1
    no_traceback(result)
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("config error: ") and str(path) in lines[0]


def test_check_config_binary_secret_file_names_the_key(tmp_path: Path) -> None:
    secret = tmp_path / "session_secret"
    secret.write_bytes(bytes(range(128, 192)))
    text = good_toml().replace(f'secret = "{SESSION_SECRET}"', f'secret_file = "{secret}"')
    path = write(tmp_path / "proxy.toml", text)
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1
    no_traceback(result)
    lines = stderr_lines(result)
    assert any(line.startswith("config error: session.secret_file:") for line in lines), lines


# --- usage errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    (),
    ("--bogus",),
    ("serve",),
    ("check-config", "--bogus"),
    ("check-config", "-c"),
    ("run", "--port", "80"),
    ("demo", "--port", "eighty"),
    ("mock-entra", "--port", "x"),
], ids=lambda a: " ".join(a) or "no-subcommand")
def test_bad_usage_exits_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    no_traceback(result)
    assert "usage:" in result.stderr


def test_help_and_version_exit_0(tmp_path: Path) -> None:
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "check-config", "demo", "mock-entra"):
        assert command in result.stdout
    version = cli("--version", cwd=tmp_path)
    assert version.returncode == 0
    assert "azure-auth-proxy" in version.stdout


# --- where the config comes from --------------------------------------------------------------


def test_proxy_config_env_is_used_without_c(tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere.toml", good_toml(cookie_name="from_env_path"))
    workdir = tmp_path / "empty"
    workdir.mkdir()
    result = cli("check-config", cwd=workdir, env={"PROXY_CONFIG": str(path)})
    assert effective(result)["session"]["cookie_name"] == "from_env_path"


def test_proxy_config_env_pointing_nowhere_fails(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    write(tmp_path / "proxy.toml", good_toml())
    result = cli("check-config", cwd=tmp_path, env={"PROXY_CONFIG": str(missing)})
    assert result.returncode == 1
    no_traceback(result)
    assert str(missing) in result.stderr


def test_c_wins_over_proxy_config(tmp_path: Path) -> None:
    good = write(tmp_path / "good.toml", good_toml(cookie_name="from_dash_c"))
    bad = write(tmp_path / "bad.toml", BAD_TOML)
    result = cli("check-config", "-c", str(good), cwd=tmp_path, env={"PROXY_CONFIG": str(bad)})
    assert effective(result)["session"]["cookie_name"] == "from_dash_c"


def test_proxy_toml_in_cwd_is_the_default(tmp_path: Path) -> None:
    write(tmp_path / "proxy.toml", good_toml(cookie_name="from_cwd"))
    result = cli("check-config", cwd=tmp_path)
    assert effective(result)["session"]["cookie_name"] == "from_cwd"


def test_no_config_anywhere_names_proxy_toml(tmp_path: Path) -> None:
    result = cli("check-config", cwd=tmp_path)
    assert result.returncode == 1
    no_traceback(result)
    lines = stderr_lines(result)
    assert len(lines) == 1 and "proxy.toml" in lines[0], lines


# --- env overrides and secrets in the output --------------------------------------------------


def test_env_overrides_show_in_effective_config(tmp_path: Path) -> None:
    path = write(tmp_path / "proxy.toml", good_toml())
    result = cli("check-config", "-c", str(path), cwd=tmp_path, env={
        "PROXY_SESSION_COOKIE_NAME": "env_cookie",
        "PROXY_SESSION_MAX_AGE": "1h",
        "PROXY_AZURE_SCOPES": "openid,email",
    })
    data = effective(result)
    assert data["session"]["cookie_name"] == "env_cookie"
    assert data["session"]["max_age"] == 3600.0
    assert data["azure"]["scopes"] == ["openid", "email"]


def test_env_client_secret_never_appears_in_output(tmp_path: Path) -> None:
    text = good_toml().replace(f'client_secret = "{CLIENT_SECRET}"\n', "")
    path = write(tmp_path / "proxy.toml", text)
    env = {"PROXY_AZURE_CLIENT_SECRET": ENV_SECRET}

    without = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert without.returncode == 1
    assert "config error: azure.client_secret:" in without.stderr

    result = cli("check-config", "-c", str(path), cwd=tmp_path, env=env)
    data = effective(result)
    assert data["azure"]["client_secret"] == "********"
    assert ENV_SECRET not in result.stdout and ENV_SECRET not in result.stderr

    # ... nor when the config is otherwise broken.
    bad = write(tmp_path / "bad.toml", text.replace(SESSION_SECRET, "short"))
    failed = cli("check-config", "-c", str(bad), cwd=tmp_path, env=env)
    assert failed.returncode == 1
    no_traceback(failed)
    assert ENV_SECRET not in failed.stdout and ENV_SECRET not in failed.stderr


def test_env_session_secret_never_appears_in_output(tmp_path: Path) -> None:
    path = write(tmp_path / "proxy.toml", good_toml())
    env_secret = "env-session-secret-0123456789abcdefghij"
    result = cli("check-config", "-c", str(path), cwd=tmp_path,
                 env={"PROXY_SESSION_SECRET": env_secret})
    assert effective(result)["session"]["secret"] == "********"
    assert env_secret not in result.stdout + result.stderr


def test_client_secret_file_never_appears_in_output(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "client_secret", ENV_SECRET + "\n")
    text = good_toml().replace(f'client_secret = "{CLIENT_SECRET}"',
                               f'client_secret_file = "{secret_file}"')
    path = write(tmp_path / "proxy.toml", text)
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert effective(result)["azure"]["client_secret"] == "********"
    assert ENV_SECRET not in result.stdout + result.stderr


def test_env_secret_file_never_appears_in_output(tmp_path: Path) -> None:
    secret_file = write(tmp_path / "client_secret", ENV_SECRET + "\n")
    text = good_toml().replace(f'client_secret = "{CLIENT_SECRET}"\n', "")
    path = write(tmp_path / "proxy.toml", text)
    result = cli("check-config", "-c", str(path), cwd=tmp_path,
                 env={"PROXY_AZURE_CLIENT_SECRET_FILE": str(secret_file)})
    assert effective(result)["azure"]["client_secret"] == "********"
    assert ENV_SECRET not in result.stdout + result.stderr


def test_unknown_env_variable_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "proxy.toml", good_toml())
    result = cli("check-config", "-c", str(path), cwd=tmp_path,
                 env={"PROXY_AZURE_CLIENTID": CLIENT_ID})
    assert result.returncode == 1
    no_traceback(result)
    assert any(line.startswith("config error: PROXY_AZURE_CLIENTID:")
               for line in stderr_lines(result)), result.stderr


# --- run and mock-entra -----------------------------------------------------------------------


def test_run_with_bad_config_exits_1_without_serving(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", BAD_TOML)
    result = cli("run", "-c", str(path), cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    no_traceback(result)
    lines = stderr_lines(result)
    assert lines and all(line.startswith("config error: ") for line in lines), lines
    assert any(line.startswith("config error: session.secret:") for line in lines)


def test_run_with_missing_config_exits_1(tmp_path: Path) -> None:
    result = cli("run", "-c", str(tmp_path / "nope.toml"), cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    no_traceback(result)
    assert len(stderr_lines(result)) == 1


def test_run_on_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write(tmp_path / "proxy.toml", good_toml(listen=f"127.0.0.1:{port}"))
        result = cli("run", "-c", str(path), cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    no_traceback(result)
    errors = [line for line in stderr_lines(result) if " INFO proxy started " not in line]
    assert len(errors) == 1, result.stderr
    assert str(port) in errors[0]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_mock_entra_refuses_non_loopback(tmp_path: Path, host: str) -> None:
    result = cli("mock-entra", "--host", host, "--port", "0", cwd=tmp_path, timeout=30)
    assert result.returncode != 0
    assert result.returncode != 2 or "usage:" not in result.stderr
    no_traceback(result)
    assert "loopback" in result.stderr
    assert "mock Entra ID on" not in result.stdout
    assert len(stderr_lines(result)) == 1, result.stderr


# --- layers: flags > env > file > defaults, and where each value came from --------------------


def test_check_config_shows_where_each_value_came_from(tmp_path: Path) -> None:
    path = write(tmp_path / "proxy.toml", good_toml(listen="127.0.0.1:4000"))
    result = cli("check-config", "-c", str(path), "--listen", "127.0.0.1:6000",
                 "--log-format", "json", cwd=tmp_path,
                 env={"PROXY_SERVER_LISTEN": "127.0.0.1:5000",
                      "PROXY_SESSION_COOKIE_NAME": "env_cookie"})
    data = effective(result)
    assert data["server"]["listen"] == "127.0.0.1:6000"
    assert data["server"]["log_format"] == "json"
    assert data["session"]["cookie_name"] == "env_cookie"
    sources = data["sources"]
    assert sources["server.listen"] == "flag --listen"
    assert sources["server.log_format"] == "flag --log-format"
    assert sources["session.cookie_name"] == "env PROXY_SESSION_COOKIE_NAME"
    assert sources["azure.client_id"] == f"file {path}"
    assert sources["server.workers"] == "default"
    assert sources["upstreams"] == f"file {path}"


def test_no_file_env_and_flags_are_enough(tmp_path: Path) -> None:
    env = {"PROXY_AZURE_CLIENT_SECRET": CLIENT_SECRET, "PROXY_SESSION_SECRET": SESSION_SECRET}
    result = cli("check-config", "--public-url", "https://tools.example.com",
                 "--client-id", CLIENT_ID, "--tenant-id", GUID,
                 "--cloud-instance", "https://login.microsoftonline.us/",
                 "--upstream", "http://127.0.0.1:9001",
                 "--upstream", "/api=http://127.0.0.1:9002", cwd=tmp_path, env=env)
    data = effective(result)
    assert [(u["path"], u["url"]) for u in data["upstreams"]] == [
        ("/", "http://127.0.0.1:9001"), ("/api", "http://127.0.0.1:9002")]
    assert data["azure"]["cloud_instance"] == "https://login.microsoftonline.us/"
    assert data["sources"]["azure.tenant_id"] == "flag --tenant-id"
    assert data["sources"]["session.secret"] == "env PROXY_SESSION_SECRET"
    assert CLIENT_SECRET not in result.stdout + result.stderr


def test_proxy_upstreams_env_without_a_file(tmp_path: Path) -> None:
    env = {"PROXY_SERVER_PUBLIC_URL": "https://tools.example.com",
           "PROXY_AZURE_CLIENT_ID": CLIENT_ID, "PROXY_AZURE_TENANT_ID": GUID,
           "PROXY_AZURE_CLIENT_SECRET": CLIENT_SECRET, "PROXY_SESSION_SECRET": SESSION_SECRET,
           "PROXY_UPSTREAMS": '[{ url = "http://127.0.0.1:9003", path = "/app" }]'}
    data = effective(cli("check-config", cwd=tmp_path, env=env))
    assert data["upstreams"][0]["url"] == "http://127.0.0.1:9003"
    assert data["sources"]["upstreams"] == "env PROXY_UPSTREAMS"


def test_an_explicit_missing_file_fails_even_with_complete_flags(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = cli("check-config", "-c", str(missing), "--client-id", CLIENT_ID, cwd=tmp_path)
    assert result.returncode == 1
    assert stderr_lines(result) == [
        f"config error: {missing}: cannot read config file (No such file or directory)"]


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_version_on_the_subcommands(tmp_path: Path, command: str) -> None:
    result = cli(command, "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("azure-auth-proxy ")


# --- what check-config catches that used to pass and break sign-in ---------------------------


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('cookie_name = "azp_session"', "max_age = 8",
     'session.max_age: 8 has no unit; write "8s" for seconds'),
    (f'client_id = "{CLIENT_ID}"', 'client_id = "my-proxy-app"',
     "azure.client_id: 'my-proxy-app' must be the Application (client) ID, a GUID"),
    ('public_url = "https://tools.example.com"', 'public_url = "https://tools example.com"',
     "server.public_url: 'https://tools example.com' must not contain spaces"),
    ('public_url = "https://tools.example.com"', 'public_url = "https://[::1"',
     "server.public_url: 'https://[::1' is not a URL"),
    ("client_secret =", "client_secert =",
     "azure.client_secert: unknown key; did you mean `client_secret`?"),
], ids=["unitless-duration", "client-id", "space", "ipv6", "near-miss"])
def test_check_config_catches_silent_breakage(tmp_path: Path, old: str, new: str,
                                              expected: str) -> None:
    text = good_toml()
    assert old in text
    path = write(tmp_path / "p.toml", text.replace(old, new, 1))
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    no_traceback(result)
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"config error: {expected}"), lines


def test_a_group_name_is_a_warning_and_exit_0(tmp_path: Path) -> None:
    text = with_lines(good_toml(), "[access]", f'groups = ["Admins", "{GUID}"]')
    result = cli("check-config", "-c", str(write(tmp_path / "p.toml", text)), cwd=tmp_path)
    data = effective(result)
    assert data["access"]["groups"] == ["Admins", GUID]
    lines = stderr_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("config warning: access.groups: 'Admins' is not a group object "
                               "ID (GUID)"), lines
