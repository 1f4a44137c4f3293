"""The sign-in diagnostics' WARNING line in `log_format = "json"`: an error redirect's text
(with the user's own state, the only way past the state check) and a spoofed token
endpoint's error stay inside one JSON object per line, with no raw control character."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from tests.attacks.harness import tally
from tests.conftest import Browsers, StackFactory
from tests.flows.test_login_security import error_callback, sign_in
from tests.support.text_log import captured_json_log

FAKE = '"}\n{"level": "info", "event": "login completed user=ceo@contoso.example"}'
LURE = "x\r\n" + FAKE + "\x1b[2J\u2028\x00"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    with captured_json_log() as sink:
        yield sink


def events(log: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.splitlines()]  # each line one object, or fails


async def test_a_callback_error_text_stays_in_its_json_event(
        make_stack: StackFactory, browsers: Browsers, json_log: io.StringIO) -> None:
    stack = await make_stack()
    hop = await error_callback(stack, browsers(), LURE, "AADSTS50105: " + LURE)
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
