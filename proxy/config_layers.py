"""The layers above proxy.toml: PROXY_<SECTION>_<KEY> / PROXY_UPSTREAMS variables and flags.

Each value becomes an Entry that remembers where it came from, so check-config can say which
layer won. Names that match no key get difflib's nearest key as a hint ("did you mean").
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from .config_values import FieldSpec

ENV_UPSTREAMS = "PROXY_UPSTREAMS"
# What Azure's platforms set in a workload's environment: [azure] keys' defaults, under
# proxy.toml. IDENTITY_ENDPOINT counts only with IDENTITY_HEADER (App Service, Container
# Apps); Azure Arc sets the endpoint alone, for another protocol.
PLATFORM_ENV = {"federated_token_file": "AZURE_FEDERATED_TOKEN_FILE",
                "imds_url": "IDENTITY_ENDPOINT", "identity_header": "IDENTITY_HEADER"}


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    value: Any
    source: str  # "file proxy.toml", "env PROXY_SERVER_LISTEN", "flag --listen", "default"
    textual: bool  # env/flag text: "true", "a,b" and JSON arrays are parsed by the field type


def did_you_mean(name: str, known: Iterable[str], style: str = "`{}`") -> str:
    """"; did you mean `client_secret`?" for a near miss of a known name, else ""."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {style.format(close[0])}?" if close else ""


def overlay(entries: dict[str, Entry], layer: Mapping[str, Entry]) -> None:
    """A higher layer's key replaces the key and its `_file` twin from lower layers."""
    for key, entry in layer.items():
        base = key.removesuffix("_file")
        entries.pop(base, None)
        entries.pop(f"{base}_file", None)
        entries[key] = entry


def platform_entries(environ: Mapping[str, str]) -> dict[str, Entry]:
    """The [azure] defaults Azure Workload Identity and App Service put in the environment."""
    found = {key: Entry(environ[var], f"env {var}", True)
             for key, var in PLATFORM_ENV.items() if environ.get(var)}
    if "imds_url" not in found or "identity_header" not in found:
        found.pop("imds_url", None)
        found.pop("identity_header", None)
    return found


def env_entries(section: str, spec: Mapping[str, FieldSpec], environ: Mapping[str, str],
                problems: list[str]) -> dict[str, Entry]:
    prefix = f"PROXY_{section.upper()}_"
    secret = {name for name, field in spec.items() if field.secret}
    known = [*spec, *(f"{name}_file" for name in secret)]
    found: dict[str, Entry] = {}
    for var, value in environ.items():
        if not var.startswith(prefix):
            continue
        key = var[len(prefix):].lower()
        base = key.removesuffix("_file")
        if key.endswith("_file") and base in secret and base in found \
                or f"{key}_file" in found:
            problems.append(f"{var}: set together with {prefix}{base.upper()}; use one")
        elif key in known:
            found[key] = Entry(value, f"env {var}", True)
        else:
            upper = [name.upper() for name in known]
            hint = did_you_mean(key.upper(), upper, style=prefix + "{}")
            problems.append(f"{var}: no key {section}.{key} exists{hint}")
    return found


def parse_upstreams(text: str) -> Any:
    """A JSON array of objects, or a TOML array of inline tables (Helm values render either)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return tomllib.loads(f"upstreams = {text}")["upstreams"]
    except tomllib.TOMLDecodeError:
        raise ValueError("must be a JSON array of objects or a TOML array of inline tables, "
                         "e.g. [{\"url\": \"http://127.0.0.1:8080\"}]") from None


def env_upstreams(environ: Mapping[str, str], problems: list[str]) -> list[Entry]:
    for var in environ:
        if var.startswith(f"{ENV_UPSTREAMS}_"):
            problems.append(f"{var}: no such variable; set {ENV_UPSTREAMS} to the whole array "
                            "of upstream tables")
    if ENV_UPSTREAMS not in environ:
        return []
    try:
        value = parse_upstreams(environ[ENV_UPSTREAMS])
    except ValueError as exc:
        problems.append(f"{ENV_UPSTREAMS}: {exc}")
        return []
    return [Entry(value, f"env {ENV_UPSTREAMS}", False)]


def flag_entries(flags: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, Entry]]:
    """Section -> key -> Entry. "upstreams" holds one Entry whose value is the whole array."""
    out: dict[str, dict[str, Entry]] = {}
    for dotted, value, flag in flags:
        source = f"flag {flag}"
        if dotted == "upstreams":
            out.setdefault("upstreams", {})["upstreams"] = Entry(json.loads(value), source, False)
        else:
            section, _, key = dotted.partition(".")
            out.setdefault(section, {})[key] = Entry(value, source, True)
    return out
