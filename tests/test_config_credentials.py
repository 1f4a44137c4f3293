"""[azure] client_credential and its keys: the chosen credential's keys are required, other
credentials' keys refused, and the platform's environment variables fill the defaults."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from proxy.config import IMDS_URL, Config
from proxy.config_load import build, from_dict, redacted
from proxy.errors import ConfigError
from proxy.oidc.client_auth import credential_kind
from tests.conftest import base_config, deep_merge

GUID = "c1d00000-0000-4000-8000-0000000000c1"


def config(azure: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    data = deep_merge(base_config(4180, "http://127.0.0.1:9", "http://127.0.0.1:8"),
                      {"azure": dict(azure)})
    return from_dict(data, environ)


def problems(azure: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(azure, environ)
    return info.value.problems


WORKLOAD = {"client_secret": "", "client_credential": "workload_identity",
            "federated_token_file": "/var/run/secrets/azure/tokens/azure-identity-token"}
MANAGED = {"client_secret": "", "client_credential": "managed_identity"}


def test_the_credential_is_inferred_as_before() -> None:
    assert credential_kind(config({}).azure) == "secret"
    cert = Config().azure.__class__(client_certificate_file="c.pem")
    assert credential_kind(cert) == "certificate"


def test_an_unknown_credential_is_named() -> None:
    assert problems({"client_credential": "password"}) == [
        "azure.client_credential: 'password' must be one of secret, certificate, "
        "workload_identity, managed_identity"]


def test_workload_identity_needs_no_secret() -> None:
    assert config(WORKLOAD).azure.federated_token_file.endswith("azure-identity-token")


def test_workload_identity_without_a_token_file_is_named() -> None:
    found = problems({**WORKLOAD, "federated_token_file": ""})
    assert len(found) == 1 and found[0].startswith(
        'azure.federated_token_file: required when client_credential = "workload_identity"')


def test_the_token_file_defaults_to_the_pods_environment() -> None:
    env = {"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"}
    data = deep_merge(base_config(4180, "http://127.0.0.1:9", "http://127.0.0.1:8"),
                      {"azure": {"client_secret": "", "client_credential": "workload_identity"}})
    loaded = build(data, env)
    assert loaded.config.azure.federated_token_file == env["AZURE_FEDERATED_TOKEN_FILE"]
    assert loaded.sources["azure.federated_token_file"] == "env AZURE_FEDERATED_TOKEN_FILE"


def test_proxy_toml_wins_over_the_platform_environment() -> None:
    env = {"AZURE_FEDERATED_TOKEN_FILE": "/from/env"}
    assert config(WORKLOAD, env).azure.federated_token_file == WORKLOAD["federated_token_file"]


@pytest.mark.parametrize("kind", ["workload_identity", "managed_identity"])
@pytest.mark.parametrize(("key", "value"), [
    ("client_secret", "leftover"),
    ("client_certificate_file", "app.pem"),
])
def test_a_leftover_secret_or_certificate_conflicts(kind: str, key: str, value: str) -> None:
    azure = {**(WORKLOAD if kind == "workload_identity" else MANAGED), key: value}
    if key == "client_certificate_file":
        azure["client_private_key_file"] = "app.key"
    found = problems(azure)
    assert f'azure.{key}: set together with client_credential = "{kind}", which replaces ' \
        "it; remove one" in found, found


def test_certificate_chosen_without_a_certificate_is_named() -> None:
    assert 'azure.client_certificate_file: required when client_credential = "certificate"' \
        in problems({"client_credential": "certificate"})


def test_managed_identity_defaults_to_imds() -> None:
    azure = config(MANAGED).azure
    assert azure.imds_url == IMDS_URL and not azure.identity_header


def test_app_service_environment_selects_its_endpoint_and_header() -> None:
    env = {"IDENTITY_ENDPOINT": "http://localhost:8081/msi/token",
           "IDENTITY_HEADER": "platform-secret"}
    loaded = config(MANAGED, env)
    assert loaded.azure.imds_url == env["IDENTITY_ENDPOINT"]
    assert loaded.azure.identity_header.reveal() == "platform-secret"
    assert "platform-secret" not in str(redacted(loaded))


def test_an_identity_endpoint_without_its_header_is_not_app_service() -> None:
    # Azure Arc sets IDENTITY_ENDPOINT alone, for a protocol the proxy does not speak.
    loaded = config(MANAGED, {"IDENTITY_ENDPOINT": "http://localhost:40342/metadata/identity"})
    assert loaded.azure.imds_url == IMDS_URL


@pytest.mark.parametrize(("url", "ok"), [
    (IMDS_URL, True),
    ("http://127.0.0.1:8081/msi/token", True),
    ("http://[fe80::1]/metadata/identity/oauth2/token", True),
    ("http://identity.example/token", False),  # plain http across a network
    ("ftp://127.0.0.1/token", False),
    ("https://identity.example/token?x=1", False),
])
def test_imds_url_must_be_loopback_link_local_or_https(url: str, ok: bool) -> None:
    azure = {**MANAGED, "imds_url": url}
    if ok:
        assert config(azure).azure.imds_url == url
    else:
        assert any(p.startswith("azure.imds_url:") for p in problems(azure))


def test_user_assigned_client_id_must_be_a_guid() -> None:
    assert config({**MANAGED, "managed_identity_client_id": GUID}).azure \
        .managed_identity_client_id == GUID
    assert any(p.startswith("azure.managed_identity_client_id:")
               for p in problems({**MANAGED, "managed_identity_client_id": "my-identity"}))


def test_the_identity_header_may_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "header"
    path.write_text("from-a-file\n")
    azure = config({**MANAGED, "identity_header_file": str(path)}).azure
    assert azure.identity_header.reveal() == "from-a-file"
