"""A wrong tenant meets Entra at discovery (HTTP 400, AADSTS90002), before any sign-in: the
page of /oauth2/start and /ready name the code and our fix for it, from our table and our
configuration only, never Entra's own words."""

from __future__ import annotations

import json
import logging
import re

import aiohttp
import pytest

from tests.conftest import Browsers, StackFactory
from tests.flows.test_login_security import fetch

UNKNOWN = "12345678-1234-1234-1234-123456789abc"
FIX = f"Tenant {UNKNOWN} does not exist in "
ENTRAS_WORDS = ("not found", "Check to make sure", "Trace ID", "invalid_tenant")


async def test_a_wrong_tenant_at_sign_in_start_and_ready_names_90002_and_the_fix(
        make_stack: StackFactory, browsers: Browsers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    stack = await make_stack({"azure": {"tenant_id": UNKNOWN}})
    hop = await fetch(browsers(), stack.url + "/oauth2/start?rd=/")
    assert hop.status == 502, hop.text[:400]
    rid = re.search(r"Request ID: ([0-9a-f]+)", hop.text)
    assert rid, hop.text[:400]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
             and f"request_id={rid[1]}" in r.getMessage()]
    assert len(lines) == 1 and "(AADSTS90002). " + FIX in lines[0], lines
    assert "discovery document answered HTTP 400 (AADSTS90002)" in hop.text
    assert FIX in hop.text and "set [azure] tenant_id to the Directory (tenant) ID" in hop.text
    assert not [w for w in ENTRAS_WORDS if w in hop.text]
    async with aiohttp.ClientSession() as client, client.get(stack.url + "/ready") as resp:
        status, body = resp.status, json.loads(await resp.text())
    assert status == 503 and body["ready"] is False
    assert body["reason"].startswith(
        "The sign-in service's discovery document answered HTTP 400 (AADSTS90002). " + FIX)
    assert not [w for w in ENTRAS_WORDS if w in body["reason"]]


async def test_an_outage_at_discovery_gets_no_hint(make_stack: StackFactory,
                                                   browsers: Browsers) -> None:
    stack = await make_stack()
    stack.mock.faults.discovery_status = 500  # Entra's 90033, not a code of our table
    hop = await fetch(browsers(), stack.url + "/oauth2/start?rd=/")
    assert hop.status == 502
    assert "discovery document answered HTTP 500 (AADSTS90033)." in hop.text
    assert "[azure]" not in hop.text and "Injected fault" not in hop.text
