"""The proxy's own log formats (text or JSON), captured in memory for a test."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from proxy.logs import JsonFormatter, TextFormatter


@contextmanager
def captured_log(formatter: logging.Formatter, logger: str = "") -> Iterator[io.StringIO]:
    """Lines `logger` (default: the root) writes at INFO and up, in `formatter`'s format."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(formatter)
    target = logging.getLogger(logger or None)
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield sink
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


@contextmanager
def captured_text_log(logger: str = "") -> Iterator[io.StringIO]:
    """Lines `logger` writes, formatted as `log_format = "text"` formats them."""
    with captured_log(TextFormatter(), logger) as sink:
        yield sink


@contextmanager
def captured_json_log(logger: str = "") -> Iterator[io.StringIO]:
    """Lines `logger` writes, formatted as `log_format = "json"` formats them."""
    with captured_log(JsonFormatter(), logger) as sink:
        yield sink
