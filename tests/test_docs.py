"""Every configuration key is documented in the example proxy.toml, and the example is valid."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from proxy.config import SECTIONS, UpstreamConfig
from proxy.config_load import load

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "proxy.toml"


def test_every_key_is_in_the_example_config() -> None:
    text = EXAMPLE.read_text()
    missing = []
    for section, cls in {**SECTIONS, "upstreams": UpstreamConfig}.items():
        for f in dataclasses.fields(cls):
            if f.name == "access" and section == "upstreams":
                continue
            if not re.search(rf"^#?\s*{f.name}\s*=", text, re.M):
                missing.append(f"{section}.{f.name}")
    assert not missing, f"undocumented keys in proxy.toml: {missing}"


def test_example_config_is_valid_once_secrets_are_given() -> None:
    config = load(EXAMPLE, {"PROXY_AZURE_CLIENT_SECRET": "s3cret",
                            "PROXY_SESSION_SECRET": "x" * 32})
    assert config.azure.client_secret.reveal() == "s3cret"
