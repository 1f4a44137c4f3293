"""Read proxy.toml, apply PROXY_<SECTION>_<KEY> env overrides and *_file secrets, coerce types.

Every problem is collected as one "key: problem" line; `load` raises one ConfigError with all
of them so an operator fixes everything in one go (oauth2-proxy's validation style).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import SECTIONS, AccessPolicyConfig, Config, Secret, UpstreamConfig
from .config_check import check
from .errors import ConfigError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_duration(value: object) -> float:
    """"90s", "15m", "1h30m", "7d", "0" or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like \"90s\", \"15m\", \"8h\" or \"7d\"")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("is far too large a duration") from None
    elif isinstance(value, str) and value.strip() == "0":
        seconds = 0.0
    elif isinstance(value, str) and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", value.strip()):
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value.strip()))
    else:
        raise ValueError(f"{value!r} is not a duration like \"90s\", \"15m\", \"8h\" or \"7d\"")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("must be a finite, non-negative duration")
    return seconds


def _coerce(kind: str, value: Any, from_env: bool) -> Any:
    """Turn a TOML value (or an env string) into the field's type; ValueError says why not."""
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value
    if kind == "Secret":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return Secret(value)
    if kind == "bool":
        if from_env and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind == "int":
        if from_env and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        return value
    if kind == "Duration":
        return parse_duration(value)
    if kind in ("tuple[str, ...]", "tuple[Secret, ...]"):
        if from_env and isinstance(value, str):
            value = json.loads(value) if value.lstrip().startswith("[") else [
                part.strip() for part in value.split(",") if part.strip()
            ]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of strings")
        return tuple(Secret(v) for v in value) if "Secret" in kind else tuple(value)
    if kind == "dict[str, str]":
        if from_env and isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError("must be a table of strings")
        return dict(value)
    raise ValueError(f"unsupported type {kind}")  # pragma: no cover - schema bug


def _read_secret_files(raw: dict[str, Any], secret_keys: set[str], where: str,
                       problems: list[str]) -> None:
    for key in secret_keys:
        file_key = f"{key}_file"
        if file_key not in raw:
            continue
        path = raw.pop(file_key)
        if key in raw:
            problems.append(f"{where}.{file_key}: set together with {where}.{key}; use one")
            continue
        try:
            text = Path(str(path)).read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"{where}.{file_key}: cannot read {path!r} ({exc.strerror})")
            continue
        except UnicodeDecodeError:
            problems.append(f"{where}.{file_key}: {path!r} is not UTF-8 text")
            continue
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        raw[key] = lines if key == "secrets" else text.strip()


def _env_overrides(section: str, cls: type[Any], environ: Mapping[str, str],
                   problems: list[str]) -> dict[str, str]:
    prefix = f"PROXY_{section.upper()}_"
    names = {f.name for f in dataclasses.fields(cls)}
    found: dict[str, str] = {}
    for var, value in environ.items():
        if not var.startswith(prefix):
            continue
        key = var[len(prefix):].lower()
        base = key.removesuffix("_file")
        if key.endswith("_file") and base in _secret_keys(cls) and base in found \
                or f"{key}_file" in found:
            problems.append(f"{var}: set together with {prefix}{base.upper()}; use one")
        elif key in names or (key.endswith("_file") and base in _secret_keys(cls)):
            found[key] = value
        else:
            problems.append(f"{var}: no key {section}.{key} exists")
    return found


def _secret_keys(cls: type[Any]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if "Secret" in str(f.type)}


def _build(cls: type[Any], raw: Mapping[str, Any], where: str, problems: list[str],
           env: Mapping[str, str] | None = None) -> Any:
    raw = dict(raw)
    for key, value in (env or {}).items():
        # An env value replaces the key and its *_file twin from the file.
        raw.pop(key.removesuffix("_file"), None)
        raw.pop(f"{key.removesuffix('_file')}_file", None)
        raw[key] = value
    _read_secret_files(raw, _secret_keys(cls), where, problems)
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            problems.append(f"{where}.{key}: unknown key")
            continue
        kind = fields[key]
        try:
            if kind == "AccessPolicyConfig | None":
                values[key] = _build(AccessPolicyConfig, _table(value), f"{where}.{key}", problems)
            else:
                values[key] = _coerce(kind, value, from_env=env is not None and key in env)
        except (ValueError, json.JSONDecodeError) as exc:
            problems.append(f"{where}.{key}: {exc}")
    return cls(**values)


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a table")
    return value


def from_dict(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Build and check a Config from parsed TOML; raise ConfigError listing every problem."""
    environ = environ or {}
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for name in data:
        if name != "upstreams" and name not in SECTIONS:
            problems.append(f"{name}: unknown section")
    for name, cls in SECTIONS.items():
        env = _env_overrides(name, cls, environ, problems)
        try:
            table = _table(data.get(name, {}))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        sections[name] = _build(cls, table, name, problems, env)
    upstreams = data.get("upstreams", [])
    if not isinstance(upstreams, list):
        problems.append("upstreams: must be an array of tables ([[upstreams]])")
        upstreams = []
    built = tuple(
        _build(UpstreamConfig, u if isinstance(u, dict) else {}, f"upstreams[{i}]", problems)
        for i, u in enumerate(upstreams)
    )
    # Check what did parse too (bad values fell back to defaults), so one run lists everything.
    config = Config(**sections, upstreams=built)
    reported = {p.split(":", 1)[0].removesuffix("_file") for p in problems}
    problems += [p for p in check(config) if p.split(":", 1)[0] not in reported]
    if problems:
        raise ConfigError(problems)
    return config


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read a proxy.toml file; ConfigError names every bad key."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file ({exc.strerror})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None
    return from_dict(data, environ)


def redacted(config: Config) -> dict[str, Any]:
    """The effective config as plain data with every secret masked (check-config output)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Secret):
            return "********" if value else ""
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    out: dict[str, Any] = plain(config)
    return out
