"""Logging setup: one line per event, plain text or JSON (`[server] log_format`).

An event carries its own fields (`log.info("access", extra=fields(...))`): JSON writes them
as keys of the line's object, text as `key=value` after the message."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

FieldValue = str | int | float | None


def fields(**values: FieldValue) -> dict[str, Any]:
    """`extra=` for an event with fields of its own, kept under one record attribute so
    they can never overwrite the record's own (`msg`, `levelname`, ...)."""
    return {"fields": values}


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line: time, level, logger, event (the message), the event's
    fields, and a traceback as the `traceback` field."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s", timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger",
                                        "message": "event", "exc_info": "traceback"})

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = record.levelname.lower()
        own = log_data.pop("fields", None)
        if isinstance(own, Mapping):
            for key, value in own.items():
                log_data.setdefault(key, value)  # never replaces time, level or event


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def escape(text: str) -> str:
    """Every character that could end, fake or garble a log line (CR, LF, ESC and other
    controls, Unicode line and paragraph separators, format characters) as a visible escape.
    Paths, user names, hosts and IdP error texts are anyone's words."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_PLAIN = re.compile(r'[!#-<>-\[\]-~]+')  # visible ASCII but `"`, `=` and `\\`: as it is


def text_value(value: FieldValue) -> str:
    """A field's value as one token: escaped, and quoted when a space, quote or `=` in it
    (a user agent, a path) could otherwise read as another `key=value`."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    text = escape(str(value))
    if not text or any(c in text for c in ' "=\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


class TextFormatter(logging.Formatter):
    """One event, one line: the message and every field value escaped; a traceback's lines
    are indented with `| ` so no text inside it (an exception message may quote input) can
    pass for a line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        line = super().formatMessage(record)
        own = getattr(record, "fields", None)
        if isinstance(own, Mapping):
            # One access line per request: the common values (visible ASCII, no quote or `=`,
            # ints) skip text_value; the line costs about what the old printf-style one did.
            parts = [line]
            for key, value in own.items():
                kind = type(value)
                if kind is int or (kind is str and _PLAIN.fullmatch(value)):
                    parts.append(f" {key}={value}")
                else:
                    parts.append(f" {key}={text_value(value)}")
            line = "".join(parts)
        return line

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return "\n".join("| " + escape(line) for line in text.split("\n"))


class BadRequestFilter(logging.Filter):
    """aiohttp logs a malformed request with a traceback quoting the raw line, which can
    hold a session cookie: keep one line with the peer and the kind of error, no bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
            record.msg = "malformed request refused from %s: %s (HTTP %s)"
            record.args = (peer, type(error).__name__, error.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_aiohttp() -> None:
    """Idempotent: our access log replaces aiohttp's (which would print query strings,
    i.e. authorization codes), and malformed requests log one safe line."""
    logging.getLogger("aiohttp.access").disabled = True
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestFilter) for f in server.filters):
        server.addFilter(BadRequestFilter())


def configured() -> bool:
    """Whether `setup` has put one of the proxy's formatters on the root logger."""
    return any(isinstance(h.formatter, (JsonFormatter, TextFormatter))
               for h in logging.getLogger().handlers)


def _log_crash(kind: type[BaseException], error: BaseException,
               trace: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("proxy").critical("crashed", exc_info=(kind, error, trace))


def setup(log_format: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Python's own warnings (DeprecationWarning, ResourceWarning) become log events too,
    # so in JSON mode no line on stderr is anything but an object.
    logging.captureWarnings(True)
    sys.excepthook = _log_crash  # a crash is an event with a traceback field, not raw text
    quiet_aiohttp()
