"""Test data vendored into the repository (see README.md here for origins and licences)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def open_redirects() -> list[str]:
    """oauth2-proxy's open-redirect corpus, one payload per entry (559 of them)."""
    # split("\n"), not splitlines(): a payload may hold U+2028 or other line breaks of its own.
    lines = (HERE / "openredirects.txt").read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines
