"""The sign-in diagnostics' WARNING line in `log_format = "json"`: an error redirect's text
(with the user's own state, the only way past the state check) and a spoofed token
endpoint's error stay inside one JSON object per line, with no raw control character."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from yarl import URL

from proxy.logs import JsonFormatter
from tests.attacks.harness import tally
from tests.conftest import Browsers, StackFactory
from tests.flows.test_login_security import fetch, sign_in, start_login

FAKE = '"}\n{"level": "info", "event": "login completed user=ceo@contoso.example"}'
LURE = "x\r\n" + FAKE + "\x1b[2J\u2028\x00"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield sink
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def events(log: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.splitlines()]  # each line one object, or fails


async def test_a_callback_error_text_stays_in_its_json_event(
        make_stack: StackFactory, browsers: Browsers, json_log: io.StringIO) -> None:
    stack = await make_stack()
    browser = browsers()
    state = URL(await start_login(stack, browser)).query["state"]
    hop = await fetch(browser, URL(stack.url + "/callback/azuread").with_query(
        state=state, error=LURE, error_description="AADSTS50105: " + LURE))
    stack.mock.faults.token_error = (400, {"error": LURE, "error_description": LURE})
    second = await sign_in(stack, browsers())
    log = json_log.getvalue()
    found = events(log)
    failed = [e for e in found if str(e.get("event", "")).startswith("login failed")]
    forged = [e for e in found if str(e.get("event", "")).startswith("login completed")]
    tally("log-forging", refused=not forged, crashed=500 in (hop.status, second.status))
    assert len(failed) == 2 and forged == [], log
    assert all(e["level"] == "warning" for e in failed)
    assert not any(c in log for c in "\r\x1b\x00\u2028")
    assert log.count("\n") == len(found)
