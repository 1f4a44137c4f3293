"""A token endpoint's `error` is the IdP's words, and a spoofed or intercepted IdP's words are
an attacker's: the sign-in page and `doctor` name only a known OAuth error (plus the AADSTS
digits and our fix); the log keeps the text, escaped (review2 finding 3)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from proxy.config_load import from_dict
from proxy.doctor import report, run_checks
from proxy.mock_entra import MockEntra
from tests.attacks.harness import tally
from tests.conftest import Browsers, StackFactory
from tests.flows.test_login_security import sign_in
from tests.support.text_log import captured_text_log
from tests.test_doctor import config_dict

LURE = "x\x1b[2J\nPASS credential: call +1 555 0100 <b>now</b>"
SPOOFED = (401, {"error": LURE, "error_description": "AADSTS7000215: Invalid client secret.",
                 "error_codes": [7000215]})


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    with captured_text_log() as sink:
        yield sink


async def test_the_page_names_no_unknown_token_error(
        make_stack: StackFactory, browsers: Browsers, text_log: io.StringIO) -> None:
    stack = await make_stack()
    stack.mock.faults.token_error = SPOOFED
    hop = await sign_in(stack, browsers())
    shown = "555" in hop.text or "PASS credential" in hop.text
    tally("spoofed-idp-text", refused=not shown, crashed=hop.status == 500)
    assert hop.status == 502 and not shown, hop.text[:800]
    assert "The token endpoint refused the request (an error, AADSTS7000215)." in hop.text
    assert "use the secret's Value" in hop.text  # our fix, from our table
    log = text_log.getvalue()
    assert "idp_error=" in log and "\\x1b[2J\\x0aPASS credential" in log
    assert "\x1b" not in log


async def test_doctor_prints_no_unknown_token_error(mock_server: tuple[MockEntra, str]) -> None:
    mock, idp = mock_server
    mock.faults.token_error = SPOOFED
    checks = await run_checks(from_dict(config_dict(idp)))
    printed = report(checks, False)
    credential = [c for c in checks if c.name == "credential"][0]
    tally("spoofed-idp-text", refused="555" not in printed, crashed=False)
    assert "555" not in printed and "\x1b" not in printed
    assert [line for line in printed.splitlines() if line.startswith("PASS credential")] == []
    assert credential.status == "FAIL" and "(an error, AADSTS7000215)" in credential.detail
