"""Workload identity federation end to end: the proxy signs users in with no client secret,
presenting the federated token it reads from `federated_token_file` for every token request.
A token Entra refuses, or one the proxy cannot read, fails the sign-in with 502, a log line
naming the cause (never the token), and /ready saying why."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from proxy.app import check_files
from proxy.config_load import from_dict
from proxy.doctor import run_checks
from proxy.errors import ConfigError
from proxy.mock_entra import MockEntra
from proxy.mock_entra.federation import ExternalIssuer
from tests.conftest import HTML, Stack, StackFactory, base_config, deep_merge
from tests.support.federation import AKS_ISSUER, SUBJECT, trust
from tests.test_cli import AZURE_NO_SECRET, SESSION_SECRET, UPSTREAM, cli, stderr_lines, write


@pytest.fixture
def issuer(mock_server: tuple[MockEntra, str]) -> ExternalIssuer:
    """The cluster's service-account issuer, trusted by a federated credential on the app."""
    return trust(mock_server[0], AKS_ISSUER, SUBJECT)


def workload(token_file: Path) -> dict[str, dict[str, str]]:
    return {"azure": {"client_secret": "", "client_credential": "workload_identity",
                      "federated_token_file": str(token_file)}}


async def sign_in(stack: Stack) -> aiohttp.ClientResponse:
    async with stack.new_browser() as browser:
        return await stack.login(client=browser)


async def test_sign_in_with_the_federated_token_and_no_secret(
        make_stack: StackFactory, issuer: ExternalIssuer, tmp_path: Path) -> None:
    token_file = tmp_path / "azure-identity-token"
    first = issuer.token(SUBJECT)
    token_file.write_text(first)
    stack = await make_stack(workload(token_file))
    assert (await sign_in(stack)).status == 200
    sent = stack.mock.token_requests[-1]
    assert "client_secret" not in sent
    assert sent["client_assertion"] == first
    # Kubernetes rotates the file: the next token request reads the new token.
    second = issuer.token(SUBJECT)
    assert second != first
    token_file.write_text(second + "\n")
    assert (await sign_in(stack)).status == 200
    assert stack.mock.client_assertions == [first, second]


@pytest.mark.parametrize(("case", "cause"), [
    ("wrong audience", "AADSTS700212"),
    ("wrong subject", "AADSTS700213"),
    ("untrusted issuer", "AADSTS700211"),
    ("expired", "expired at"),
    ("unreadable file", "cannot read azure.federated_token_file"),
    ("not a JWT", "holds no JWT"),
    ("too large", "larger than 16384 bytes"),
])
async def test_a_bad_federated_token_fails_sign_in_with_502_and_says_why(
        make_stack: StackFactory, issuer: ExternalIssuer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, case: str, cause: str) -> None:
    token_file = tmp_path / "azure-identity-token"
    token = {
        "wrong audience": lambda: issuer.token(SUBJECT, audience="api://other"),
        "wrong subject": lambda: issuer.token("system:serviceaccount:web:intruder"),
        "untrusted issuer": lambda: ExternalIssuer("https://evil.example/").token(SUBJECT),
        "expired": lambda: issuer.token(SUBJECT, lifetime=-120),
        "unreadable file": lambda: "",
        "not a JWT": lambda: "not-a-token",
        "too large": lambda: issuer.token(SUBJECT, extra={"pad": "x" * 20000}),
    }[case]()
    if token:
        token_file.write_text(token)
    stack = await make_stack(workload(token_file))
    resp = await sign_in(stack)
    assert resp.status == 502
    failures = [m for m in caplog.messages if m.startswith("login failed request_id=")]
    assert len(failures) == 1, caplog.messages
    assert cause in failures[0], failures
    assert "request_id=" in failures[0]
    if token:
        assert token not in caplog.text
        assert token.split(".")[-1] not in caplog.text  # not even the signature
    if case in ("expired", "unreadable file", "not a JWT", "too large"):
        assert stack.mock.client_assertions == []  # refused before reaching Entra


async def test_refresh_grants_read_the_file_too(
        make_stack: StackFactory, issuer: ExternalIssuer, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(issuer.token(SUBJECT))
    stack = await make_stack({**workload(token_file), "session": {"store": "memory"}})
    stack.mock.access_token_lifetime = 60  # inside the refresh window: every request refreshes
    assert (await stack.login()).status == 200
    token_file.unlink()
    async with stack.client.get(stack.url + "/x") as resp:
        assert resp.status == 200  # a refresh that cannot be made keeps the session
    assert any("token refresh failed" in m and "detail=cannot read azure.federated_token_file"
               in m for m in caplog.messages), caplog.messages
    rotated = issuer.token(SUBJECT)
    token_file.write_text(rotated)
    async with stack.client.get(stack.url + "/y") as resp:
        assert resp.status == 200
    assert stack.mock.token_requests[-1]["grant_type"] == "refresh_token"
    assert stack.mock.client_assertions[-1] == rotated


async def test_ready_says_why_when_the_token_file_is_unreadable(
        make_stack: StackFactory, issuer: ExternalIssuer, tmp_path: Path) -> None:
    token_file = tmp_path / "azure-identity-token"
    stack = await make_stack(workload(token_file))
    async with stack.client.get(stack.url + "/ready") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["ready"] is False
    assert "federated token file cannot be read" in body["reason"]
    token_file.write_text(issuer.token(SUBJECT))
    async with stack.client.get(stack.url + "/ready") as resp:
        assert resp.status == 200, await resp.text()


async def test_ready_says_why_when_the_token_has_expired(
        make_stack: StackFactory, issuer: ExternalIssuer, tmp_path: Path) -> None:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(issuer.token(SUBJECT, lifetime=-1))
    stack = await make_stack(workload(token_file))
    async with stack.client.get(stack.url + "/ready", headers=HTML) as resp:
        assert resp.status == 503
        assert "federated token has expired" in (await resp.json())["reason"]


def test_check_config_names_a_missing_token_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "token"
    config = from_dict(deep_merge(base_config(4180, "http://127.0.0.1:9", "http://127.0.0.1:8"),
                                  workload(missing)))
    with pytest.raises(ConfigError) as info:
        check_files(config)
    assert info.value.problems == [
        f"azure.federated_token_file: cannot read {missing}: No such file or directory"]


def test_check_config_accepts_a_readable_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("x")  # check-config reads it; the token is checked per request
    config = from_dict(deep_merge(base_config(4180, "http://127.0.0.1:9", "http://127.0.0.1:8"),
                                  workload(token_file)))
    check_files(config)


def test_check_config_command_reports_the_file_from_the_pods_environment(tmp_path: Path) -> None:
    text = (f'[server]\npublic_url = "https://tools.example.com"\n\n{AZURE_NO_SECRET}'
            f'client_credential = "workload_identity"\n\n[session]\n'
            f'secret = "{SESSION_SECRET}"\n\n{UPSTREAM}')
    path = write(tmp_path / "proxy.toml", text)
    missing = tmp_path / "tokens" / "azure-identity-token"
    result = cli("check-config", "-c", str(path), cwd=tmp_path,
                 env={"AZURE_FEDERATED_TOKEN_FILE": str(missing)})
    assert result.returncode == 1
    assert stderr_lines(result) == [f"config error: azure.federated_token_file: cannot read "
                                    f"{missing}: No such file or directory"]
    missing.parent.mkdir()
    missing.write_text("x")
    result = cli("check-config", "-c", str(path), cwd=tmp_path,
                 env={"AZURE_FEDERATED_TOKEN_FILE": str(missing)})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("written", "status", "said"), [
    (True, "PASS", "the federated token got an app token"),
    (False, "FAIL", "cannot read azure.federated_token_file"),
])
async def test_doctor_probes_the_federated_credential(
        mock_server: tuple[MockEntra, str], issuer: ExternalIssuer, tmp_path: Path,
        written: bool, status: str, said: str) -> None:
    _, idp = mock_server
    token_file = tmp_path / "azure-identity-token"
    if written:
        token_file.write_text(issuer.token(SUBJECT))
    config = from_dict(deep_merge(base_config(4180, idp, "http://127.0.0.1:9"),
                                  workload(token_file)))
    (check,) = [c for c in await run_checks(config) if c.name == "credential"]
    assert check.status == status and said in check.detail, check
