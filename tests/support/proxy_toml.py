"""proxy.toml writers for tests that run `python -m proxy run` as a process: a config dict
(the shape tests/conftest.py's make_stack merges) written as TOML, one writer for all."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID
from tests.conftest import SECRET, deep_merge

HOST = "127.0.0.1"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: Mapping[str, Any]) -> str:
    """Sections of scalars/lists/inline tables, plus ``upstreams`` as [[upstreams]]."""
    lines: list[str] = []
    for section, body in config.items():
        if section == "upstreams":
            continue
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in body.items()]
    for upstream in config.get("upstreams", ()):
        lines.append("[[upstreams]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in upstream.items()]
    return "\n".join(lines) + "\n"


def proxy_config(port: int, idp: str, upstream: str,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A proxy on 127.0.0.1:`port` signing in at the mock Entra ID `idp`, with one route to
    `upstream`; `extra` is merged in, section by section."""
    base: dict[str, Any] = {
        "server": {"listen": f"{HOST}:{port}", "public_url": f"http://{HOST}:{port}"},
        "azure": {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
                  "tenant_id": DEFAULT_TENANT_ID, "cloud_instance": idp + "/"},
        "session": {"secret": SECRET, "secure": False},
        "upstreams": [{"path": "/", "url": upstream}],
    }
    return deep_merge(base, dict(extra or {}))


def write_proxy_toml(path: Path, port: int, idp: str, upstream: str,
                     extra: Mapping[str, Any] | None = None) -> Path:
    """Write proxy_config(...) as TOML to `path`; returns `path` for `-c`."""
    path.write_text(to_toml(proxy_config(port, idp, upstream, extra)))
    return path
