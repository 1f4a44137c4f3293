"""Logging setup: one line per event, plain text or JSON (`[server] log_format`)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


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


class TextFormatter(logging.Formatter):
    """One event, one line: the message is escaped; a traceback's lines are indented with
    `| ` so no text inside it (an exception message may quote input) can pass for a line."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

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


def setup(log_format: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_aiohttp()
