"""`azure-auth-proxy doctor` against the mock Entra ID over real sockets: all pass on a good
setup, and each broken piece FAILs with its fix (issue 14 item 6)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.config_load import from_dict
from proxy.doctor import Check, passed, report, run_checks
from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, MockEntra
from tests.conftest import base_config, deep_merge, free_port
from tests.support.proxy_toml import to_toml

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {"access": {"groups": ["00000000-0000-0000-0000-00000000a11e"]}}


def config_dict(idp: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return deep_merge(base_config(free_port(), idp, "http://127.0.0.1:9"), extra or {})


async def doctor(idp: str, extra: dict[str, Any] | None = None,
                 tenant: str = "") -> dict[str, Check]:
    checks = await run_checks(from_dict(config_dict(idp, extra)), tenant=tenant)
    assert len({c.name for c in checks}) == len(checks)
    return {c.name: c for c in checks}


def failed(checks: dict[str, Check]) -> list[str]:
    return [name for name, c in checks.items() if c.status == "FAIL"]


async def test_a_good_setup_passes_every_check(mock_server: tuple[MockEntra, str]) -> None:
    _, idp = mock_server
    checks = await doctor(idp, GROUPS)
    assert list(checks) == ["discovery", "issuer", "jwks", "clock", "credential",
                            "redirect-uri", "graph"]
    assert all(c.status == "PASS" for c in checks.values()), checks
    assert passed(list(checks.values()))


async def test_graph_is_checked_only_when_groups_are_used(
        mock_server: tuple[MockEntra, str]) -> None:
    mock, idp = mock_server
    mock.faults.graph_status = 503
    assert "graph" not in await doctor(idp)
    checks = await doctor(idp, GROUPS)
    assert failed(checks) == ["graph"] and "HTTP 503" in checks["graph"].detail
    unreachable = await doctor(idp, deep_merge(GROUPS, {"azure": {
        "graph_url": f"http://127.0.0.1:{free_port()}"}}))
    assert failed(unreachable) == ["graph"] and "unreachable" in unreachable["graph"].detail


async def test_wrong_secret_fails_with_the_7000215_fix(
        mock_server: tuple[MockEntra, str]) -> None:
    _, idp = mock_server
    checks = await doctor(idp, {"azure": {"client_secret": "a-wrong-secret"}})
    assert failed(checks) == ["credential"]
    assert "AADSTS7000215" in checks["credential"].detail
    assert "use the secret's Value, not its Secret ID" in checks["credential"].fix
    assert "a-wrong-secret" not in report(list(checks.values()), False)


async def test_expired_secret_fails_with_the_7000222_fix(
        mock_server: tuple[MockEntra, str]) -> None:
    mock, idp = mock_server
    client = mock.clients[DEFAULT_CLIENT_ID]
    mock.clients[DEFAULT_CLIENT_ID] = dataclasses.replace(client, secret_expired=True)
    checks = await doctor(idp)
    assert failed(checks) == ["credential"] and "AADSTS7000222" in checks["credential"].detail
    assert "has expired" in checks["credential"].fix


async def test_unknown_app_fails_credential_and_redirect_uri_with_700016(
        mock_server: tuple[MockEntra, str]) -> None:
    _, idp = mock_server
    checks = await doctor(idp, {"azure": {"client_id": "0badc0de-0000-0000-0000-000000000000"}})
    assert failed(checks) == ["credential", "redirect-uri"]
    for name in ("credential", "redirect-uri"):
        assert "700016" in checks[name].detail and "is not registered in tenant" in (
            checks[name].fix)


async def test_unregistered_redirect_uri_fails_with_50011(
        mock_server: tuple[MockEntra, str]) -> None:
    _, idp = mock_server
    checks = await doctor(idp, {"server": {"public_url": "https://tools.example.com"}})
    assert failed(checks) == ["redirect-uri"]
    assert "AADSTS50011" in checks["redirect-uri"].detail
    assert checks["redirect-uri"].fix.startswith(
        "register https://tools.example.com/callback/azuread as a Web redirect URI")


async def test_unknown_tenant_fails_with_90002(mock_server: tuple[MockEntra, str]) -> None:
    _, idp = mock_server
    unknown = "12345678-1234-1234-1234-123456789abc"
    checks = await doctor(idp, {"azure": {"tenant_id": unknown}})
    assert checks["discovery"].status == "FAIL" and "AADSTS90002" in checks["discovery"].detail
    assert f"tenant {unknown} does not exist" in checks["discovery"].fix
    assert checks["credential"].status == "WARN" and not passed(list(checks.values()))


async def test_issuer_mismatch_fails(mock_server: tuple[MockEntra, str]) -> None:
    mock, idp = mock_server
    mock.faults.discovery_issuer = "https://evil.example/" + DEFAULT_TENANT_ID + "/v2.0"
    checks = await doctor(idp)
    assert checks["issuer"].status == "FAIL" and "does not match" in checks["issuer"].detail
    assert "jwks" not in checks


@pytest.mark.parametrize(("offset", "status"), [(0, "PASS"), (90, "WARN"), (-90, "WARN"),
                                                (600, "FAIL"), (-3600, "FAIL")])
async def test_clock_skew_against_the_idps_date(mock_server: tuple[MockEntra, str],
                                                offset: float, status: str) -> None:
    mock, idp = mock_server
    mock.faults.date_offset = offset
    checks = await doctor(idp)
    assert checks["clock"].status == status, checks["clock"]
    if status != "PASS":
        assert ("behind" if offset > 0 else "ahead of") in checks["clock"].detail
        assert "NTP" in checks["clock"].fix


async def test_multi_tenant_credential_needs_a_tenant(mock_server: tuple[MockEntra, str]) -> None:
    _, idp = mock_server
    multi = {"azure": {"tenant_id": "organizations", "allow_any_tenant": True}}
    checks = await doctor(idp, multi)
    assert checks["credential"].status == "WARN" and "--tenant" in checks["credential"].fix
    assert passed(list(checks.values()))  # a WARN is not a failure
    checks = await doctor(idp, multi, tenant=DEFAULT_TENANT_ID)
    assert checks["credential"].status == "PASS"


async def test_unreachable_idp_fails_discovery_with_a_fix() -> None:
    checks = await doctor(f"http://127.0.0.1:{free_port()}")
    assert checks["discovery"].status == "FAIL" and "unreachable" in checks["discovery"].detail
    assert not passed(list(checks.values()))


async def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "proxy", "doctor", *args]
    return await asyncio.to_thread(subprocess.run, command, cwd=ROOT, capture_output=True,
                                   text=True, timeout=60)


async def test_cli_exit_codes_and_output(mock_server: tuple[MockEntra, str],
                                         tmp_path: Path) -> None:
    _, idp = mock_server
    good = tmp_path / "good.toml"
    good.write_text(to_toml(config_dict(idp)))
    result = await run_cli("-c", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].startswith("PASS discovery: ")
    as_json = await run_cli("-c", str(good), "--json")
    assert json.loads(as_json.stdout)["ok"] is True

    bad = tmp_path / "bad.toml"
    bad.write_text(to_toml(config_dict(idp, {"azure": {"client_secret": "not-it-at-all"}})))
    result = await run_cli("-c", str(bad))
    assert result.returncode == 1
    assert "FAIL credential: " in result.stdout and "     fix: [azure] client_secret" in (
        result.stdout)
    assert "not-it-at-all" not in result.stdout + result.stderr
