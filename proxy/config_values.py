"""Value parsers for config fields, chosen by a table keyed on each field's resolved type.

`schema(cls)` resolves a dataclass's annotations once (typing.get_type_hints) and looks each
type up in PARSERS; a field of a type the table lacks fails at import, not at some later
load. A parser turns a TOML value, or the text of an environment variable or CLI flag
(`textual`), into the field's type; its ValueError says why not, without echoing secrets.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, get_type_hints

from .config import SECTIONS, AccessPolicyConfig, Duration, Secret, UpstreamConfig

Parser = Callable[[Any, bool], Any]  # (value, textual) -> typed value

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_duration(value: object) -> float:
    """"90s", "15m", "1h30m", "7d" or 0. A bare number is refused, as Go's time.ParseDuration
    (and so oauth2-proxy) refuses "8": `max_age = 8` meant as hours would be 8 seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        if len(shown) > 20 or not math.isfinite(value) or value < 0:
            raise ValueError("must be a duration like \"90s\", \"15m\", \"8h\" or \"7d\"")
        raise ValueError(f"{shown} has no unit; write \"{shown}s\" for seconds (or "
                         f"\"{shown}m\", \"{shown}h\", \"{shown}d\")")
    if isinstance(value, str) and value.strip() == "0":
        return 0.0
    if not isinstance(value, str) or not re.fullmatch(
            rf"(?:{_DURATION_PART.pattern})+", value.strip()):
        raise ValueError(f"{value!r} is not a duration like \"90s\", \"15m\", \"8h\" or \"7d\"")
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value.strip()))
    if not math.isfinite(seconds):
        raise ValueError("is far too large a duration")
    return seconds


def _duration(value: Any, textual: bool) -> float:
    return parse_duration(value)


def _string(value: Any, textual: bool) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _secret(value: Any, textual: bool) -> Secret:
    return Secret(_string(value, textual))


def _boolean(value: Any, textual: bool) -> bool:
    if textual and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _integer(value: Any, textual: bool) -> int:
    if textual and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    return value


def _strings(value: Any, textual: bool) -> tuple[str, ...]:
    if textual and isinstance(value, str):
        value = _json(value) if value.lstrip().startswith("[") else [
            part.strip() for part in value.split(",") if part.strip()
        ]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of strings")
    return tuple(value)


def _secrets(value: Any, textual: bool) -> tuple[Secret, ...]:
    return tuple(Secret(v) for v in _strings(value, textual))


def _string_table(value: Any, textual: bool) -> Mapping[str, str]:
    if textual and isinstance(value, str):
        value = _json(value)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("must be a table of strings")
    return MappingProxyType(dict(value))


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON ({exc.msg} at character {exc.pos})") from None


PARSERS: Mapping[object, Parser] = MappingProxyType({
    str: _string,
    Secret: _secret,
    bool: _boolean,
    int: _integer,
    Duration: _duration,
    tuple[str, ...]: _strings,
    tuple[Secret, ...]: _secrets,
    Mapping[str, str]: _string_table,
})
SECRET_TYPES = (Secret, tuple[Secret, ...])
NESTED: Mapping[object, type[Any]] = MappingProxyType({
    AccessPolicyConfig | None: AccessPolicyConfig,
})


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    parse: Parser | None  # None: a nested table of `nested`
    nested: type[Any] | None = None
    secret: bool = False  # masked in output; may come from `<name>_file`


def schema(cls: type[Any]) -> Mapping[str, FieldSpec]:
    """Field name -> how to parse it, for one config dataclass."""
    hints = get_type_hints(cls, include_extras=True)
    out: dict[str, FieldSpec] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if hint in NESTED:
            out[f.name] = FieldSpec(f.name, None, NESTED[hint])
        else:
            out[f.name] = FieldSpec(f.name, PARSERS[hint], secret=hint in SECRET_TYPES)
    return MappingProxyType(out)


# Built once at import: a field whose type has no parser is a schema bug and fails here.
SCHEMAS: Mapping[type[Any], Mapping[str, FieldSpec]] = MappingProxyType({
    cls: schema(cls) for cls in (*SECTIONS.values(), UpstreamConfig)
})
