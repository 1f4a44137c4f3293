"""The proxy's own text log format, captured in memory for a test."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from proxy.logs import TextFormatter


@contextmanager
def captured_text_log(logger: str = "") -> Iterator[io.StringIO]:
    """Lines `logger` (default: the root) writes at INFO and up, formatted as
    `log_format = "text"` formats them."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(TextFormatter())
    target = logging.getLogger(logger or None)
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield sink
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
