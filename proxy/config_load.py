"""Build a Config from layers: defaults < proxy.toml < PROXY_* environment < command-line flags.

Every problem is collected as one "key: problem" line; `build` raises one ConfigError with all
of them so an operator fixes everything in one go (oauth2-proxy's validation style). Each
effective value remembers its layer (`Loaded.sources`), which check-config prints.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .config import SECTIONS, Config, Secret, UpstreamConfig
from .config_check import check, config_warnings
from .config_layers import (
    ENV_UPSTREAMS,
    Entry,
    did_you_mean,
    env_entries,
    env_upstreams,
    flag_entries,
    overlay,
    platform_entries,
)
from .config_values import SCHEMAS, FieldSpec, parse_duration
from .errors import ConfigError

__all__ = ["ConfigSource", "Loaded", "build", "from_dict", "load", "parse_duration", "redacted"]

_HINT = re.compile(r"did you mean `(\w+)`\?$")
Flag = tuple[str, str, str]  # (dotted key or "upstreams", value, "--flag" it came from)


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    config: Config
    sources: Mapping[str, str]  # "server.listen" -> "default" | "file X" | "env VAR" | "flag --x"
    warnings: tuple[str, ...]  # "key: problem" lines for values that may be intended


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigSource:
    """Everything but the environment that makes the config. Workers and SIGHUP reloads read
    it again as is, so a reload re-applies the same file and flags to the current env."""

    path: str = "proxy.toml"
    required: bool = True  # False: the default ./proxy.toml, which may be absent
    flags: tuple[Flag, ...] = ()

    def read(self, environ: Mapping[str, str] | None = None) -> Loaded:
        path = Path(self.path)
        if not self.required and not path.exists():
            try:
                return build({}, environ, self.flags, file_label="")
            except ConfigError as exc:
                hint = (f"{self.path}: not found, so only the environment and flags were read "
                        "(or name a file with -c/--config or $PROXY_CONFIG)")
                configured = self.flags or any(
                    var.startswith("PROXY_") and var != "PROXY_CONFIG" for var in environ or {})
                # Nothing configured at all: the missing file is the one problem worth a line.
                raise ConfigError([*exc.problems, hint] if configured else [hint]) from None
        return build(_read_toml(path), environ, self.flags, file_label=f"file {self.path}")

    def load(self, environ: Mapping[str, str] | None = None) -> Config:
        return self.read(environ).config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file ({exc.strerror})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None


def _read_secret_files(entries: dict[str, Entry], spec: Mapping[str, FieldSpec], where: str,
                       problems: list[str]) -> None:
    for key in [name for name, field in spec.items() if field.secret]:
        file_key = f"{key}_file"
        if file_key not in entries:
            continue
        entry = entries.pop(file_key)
        if key in entries:
            problems.append(f"{where}.{file_key}: set together with {where}.{key}; use one")
            continue
        path = str(entry.value)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"{where}.{file_key}: cannot read {path!r} ({exc.strerror})")
            continue
        except UnicodeDecodeError:
            problems.append(f"{where}.{file_key}: {path!r} is not UTF-8 text")
            continue
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        source = entry.source if entry.source.startswith("env") else f"{entry.source} " \
            f"({file_key})"
        entries[key] = Entry(lines if key == "secrets" else text.strip(), source, False)


def _build(cls: type[Any], entries: dict[str, Entry], where: str, problems: list[str],
           sources: dict[str, str]) -> Any:
    spec = SCHEMAS[cls]
    _read_secret_files(entries, spec, where, problems)
    values: dict[str, Any] = {}
    for key, entry in entries.items():
        field = spec.get(key)
        if field is None:
            known = [*spec, *(f"{n}_file" for n, f in spec.items() if f.secret)]
            problems.append(f"{where}.{key}: unknown key{did_you_mean(key, known)}")
            continue
        sources[f"{where}.{key}"] = entry.source
        try:
            if field.nested is not None:
                nested = {k: Entry(v, entry.source, False) for k, v in _table(entry.value).items()}
                values[key] = _build(field.nested, nested, f"{where}.{key}", problems, sources)
            elif field.parse is not None:
                values[key] = field.parse(entry.value, entry.textual)
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
    for name in spec:
        sources.setdefault(f"{where}.{name}", "default")
    return cls(**values)


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a table")
    return value


def build(data: Mapping[str, Any], environ: Mapping[str, str] | None = None,
          flags: tuple[Flag, ...] = (), *, file_label: str = "file") -> Loaded:
    """Layer `data` (parsed TOML), PROXY_* variables and flags; check; raise ConfigError
    listing every problem."""
    environ = environ or {}
    problems: list[str] = []
    sources: dict[str, str] = {}
    known = [*SECTIONS, "upstreams"]
    problems += [f"{name}: unknown section{did_you_mean(name, known)}"
                 for name in data if name not in known]
    by_flag = flag_entries(flags)
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        try:
            table = _table(data.get(name, {}))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            table = {}
        entries = {key: Entry(value, file_label, False) for key, value in table.items()}
        for key, entry in (platform_entries(environ) if name == "azure" else {}).items():
            if key not in entries and f"{key}_file" not in entries:  # under the file
                entries[key] = entry
        overlay(entries, env_entries(name, SCHEMAS[cls], environ, problems))
        overlay(entries, by_flag.get(name, {}))
        sections[name] = _build(cls, entries, name, problems, sources)
    layers = [Entry(data["upstreams"], file_label, False)] if "upstreams" in data else []
    layers += env_upstreams(environ, problems)
    layers += list(by_flag.get("upstreams", {}).values())
    upstreams = layers[-1] if layers else Entry([], "default", False)
    sources["upstreams"] = upstreams.source
    if not isinstance(upstreams.value, list):
        where = ENV_UPSTREAMS if upstreams.source.startswith("env") else "upstreams"
        problems.append(f"{where}: must be an array of tables ([[upstreams]])")
        upstreams = Entry([], upstreams.source, False)
    built: list[UpstreamConfig] = []
    for i, u in enumerate(upstreams.value):
        if not isinstance(u, dict):
            problems.append(f"upstreams[{i}]: must be a table")
            continue
        entries = {key: Entry(value, upstreams.source, False) for key, value in u.items()}
        built.append(_build(UpstreamConfig, entries, f"upstreams[{i}]", problems, sources))
    # Check what did parse too (bad values fell back to defaults), so one run lists everything.
    config = Config(**sections, upstreams=tuple(built))
    reported = {p.split(":", 1)[0].removesuffix("_file") for p in problems}
    # "azure.client_secert: ... did you mean `client_secret`?" already says what is missing.
    reported |= {f"{p.split(':', 1)[0].rpartition('.')[0]}.{m[1]}".removesuffix("_file")
                 for p in problems if (m := _HINT.search(p))}
    problems += [p for p in check(config) if p.split(":", 1)[0] not in reported]
    if problems:
        raise ConfigError(problems)
    return Loaded(config, MappingProxyType(sources), tuple(config_warnings(config)))


def from_dict(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Build and check a Config from parsed TOML; raise ConfigError listing every problem."""
    return build(data, environ).config


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read a proxy.toml file (it must exist); ConfigError names every bad key."""
    return ConfigSource(str(path)).load(environ)


def redacted(config: Config) -> dict[str, Any]:
    """The effective config as plain data with every secret masked (check-config output)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Secret):
            return "********" if value else ""
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    out: dict[str, Any] = plain(config)
    return out
