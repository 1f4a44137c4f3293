"""Every failed callback writes one WARNING line an admin can act on (issue 14 item 6): the
request id the page shows, which check failed, and for Entra's errors its AADSTS code with
our one-line fix. The page shows that fix only for configuration problems, a sentence for
the person signing in for theirs, and never Entra's own words."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from itsdangerous import TimestampSigner
from yarl import URL

from proxy.mock_entra import DEFAULT_CLIENT_ID, OTHER_TENANT_ID
from proxy.session.login_state import LOGIN_TTL
from tests.conftest import ALICE, Browsers, Stack, StackFactory
from tests.flows.test_login_security import (
    Hop,
    at_idp,
    error_callback,
    fetch,
    give_cookie,
    login_cookie,
    sign_in,
    start_login,
)
from tests.support.idtoken_faults import claims, header, hours, issuer, sign

GINA = "gina@contoso.example"  # 1,000 groups: the ID token carries the overage marker
RID = re.compile(r"Request ID: ([0-9a-f]+)")


def refusal(caplog: pytest.LogCaptureFixture, hop: Hop) -> str:
    """The one WARNING line of the failed callback whose page is `hop`."""
    found = RID.search(hop.text)
    assert found, hop.text[:600]
    rid = found[1]
    assert hop.headers["X-Request-Id"] == rid
    lines = [r.getMessage() for r in caplog.records
             if r.levelno == logging.WARNING and f"request_id={rid}" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(("login refused ", "login failed ")), lines[0]
    return lines[0]


# (id, fault, config, status, in the log line, on the page)
Case = tuple[str, Callable[[Stack], None], dict[str, Any], int, tuple[str, ...], tuple[str, ...]]


def _expired_secret(stack: Stack) -> None:
    client = stack.mock.clients[DEFAULT_CLIENT_ID]
    stack.mock.clients[DEFAULT_CLIENT_ID] = dataclasses.replace(client, secret_expired=True)


def _unassigned(stack: Stack) -> None:
    """The enterprise app requires assignment, and nobody is assigned."""
    client = stack.mock.clients[DEFAULT_CLIENT_ID]
    stack.mock.clients[DEFAULT_CLIENT_ID] = dataclasses.replace(client, assigned_users=())


def _jwks_down(stack: Stack) -> None:
    stack.mock.faults.jwks_status = 503


def _authorize_error(error: str, description: str) -> Callable[[Stack], None]:
    def apply(stack: Stack) -> None:
        stack.mock.faults.authorize_error = (error, description)
    return apply


NO_CONFIG: dict[str, Any] = {}
CASES: list[Case] = [
    ("unknown-key", header(kid="not-a-published-kid"), NO_CONFIG, 401,
     ("reason=the token is signed with an unknown key",), ()),
    ("signature", sign("bad_signature"), NO_CONFIG, 401,
     ("reason=the signature does not verify",), ()),
    ("audience", claims(aud="00000000-0000-0000-0000-00000000beef"), NO_CONFIG, 401,
     ("reason=the audience (aud) is not this application",), ()),
    ("issuer", claims(iss=lambda s: issuer(s, OTHER_TENANT_ID)), NO_CONFIG, 401,
     ("reason=the issuer (iss) does not match the tenant",), ()),
    ("expiry", claims(exp=hours(-3), iat=hours(-4)), NO_CONFIG, 401,
     ("reason=the token has expired",), ()),
    ("nbf", claims(nbf=hours(2)), NO_CONFIG, 401, ("reason=the token is not valid yet",), ()),
    ("nonce", claims(nonce="another-sign-in"), NO_CONFIG, 401,
     ("reason=the nonce does not match this sign-in",), ()),
    ("jwks-down", _jwks_down, NO_CONFIG, 503,
     ("login failed", "reason=The sign-in service's key set (JWKS) is unavailable"), ()),
    ("wrong-secret", lambda s: None, {"azure": {"client_secret": "not-the-secret"}}, 502,
     ("login failed", "reason=token-endpoint-401", "idp_error=invalid_client",
      "aadsts=7000215", "hint=[azure] client_secret is not a valid secret of app",
      "detail=AADSTS7000215: Invalid client secret provided."),
     ("AADSTS7000215", "[azure] client_secret is not a valid secret of app")),
    ("expired-secret", _expired_secret, NO_CONFIG, 502,
     ("aadsts=7000222", "hint=the client secret of app"),
     ("AADSTS7000222", "Certificates & secrets")),
    ("not-assigned", _unassigned, NO_CONFIG,
     403, ("reason=idp-error", "idp_error=interaction_required", "aadsts=50105",
           "hint=the user is not assigned to app", "detail=AADSTS50105: The signed in user"),
     ("AADSTS50105", "Your account is not assigned to this application")),
    ("consent", _authorize_error("consent_required", "AADSTS65001: The user or administrator "
                                 "has not consented."), NO_CONFIG, 403,
     ("aadsts=65001", "hint=app"), ("Grant admin consent",)),
    ("conditional-access", _authorize_error("access_denied", "AADSTS53003: Access has been "
                                            "blocked by Conditional Access policies."),
     NO_CONFIG, 403, ("aadsts=53003", "hint=a Conditional Access policy blocked"),
     ("access policies blocked this sign-in",)),
    ("graph-down", lambda s: setattr(s.mock.faults, "graph_status", 503), NO_CONFIG, 502,
     ("login failed", "reason=Microsoft Graph could not list your groups (HTTP 503)"), ()),
]


@pytest.mark.parametrize(("fault", "config", "status", "logged", "shown"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_each_failure_logs_its_reason_with_the_pages_request_id(
        make_stack: StackFactory, browsers: Browsers, caplog: pytest.LogCaptureFixture,
        fault: Callable[[Stack], None], config: dict[str, Any], status: int,
        logged: tuple[str, ...], shown: tuple[str, ...]) -> None:
    caplog.set_level(logging.INFO)
    stack = await make_stack(config)
    fault(stack)
    hop = await sign_in(stack, browsers(), user=GINA if stack.mock.faults.graph_status else ALICE)
    assert hop.status == status, hop.text[:600]
    line = refusal(caplog, hop)
    for text in logged:
        assert text in line, (text, line)
    for text in shown:
        assert text in hop.text, (text, hop.text[:900])
    assert "Trace ID" not in hop.text and "not-the-secret" not in line + hop.text


async def test_tenant_not_allowed(make_stack: StackFactory, browsers: Browsers,
                                  caplog: pytest.LogCaptureFixture) -> None:
    stack = await make_stack({"azure": {"tenant_id": "organizations",
                                        "allowed_tenants": [OTHER_TENANT_ID]}})
    hop = await sign_in(stack, browsers(), tenant="organizations")
    assert hop.status == 403
    line = refusal(caplog, hop)
    assert "reason=tenant-not-allowed" in line and "tid=" in line and "hint=" in line


async def test_session_too_large_for_the_cookie(make_stack: StackFactory, browsers: Browsers,
                                                caplog: pytest.LogCaptureFixture) -> None:
    stack = await make_stack()
    hop = await sign_in(stack, browsers(), user=GINA)
    assert hop.status == 500
    line = refusal(caplog, hop)
    assert "reason=session-too-large-for-cookie" in line and f"user={GINA}" in line
    assert "groups=1000" in line


async def test_state_failures_name_their_check(make_stack: StackFactory, browsers: Browsers,
                                               caplog: pytest.LogCaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    stack = await make_stack()
    callback = URL(stack.url + "/callback/azuread")
    hop = await fetch(browsers(), callback.with_query(code="x"))
    assert "reason=the sign-in response has no valid state" in refusal(caplog, hop)

    first, second, third = browsers(), browsers(), browsers()
    theirs = URL(await at_idp(stack, first, await start_login(stack, first)))
    hop = await fetch(second, theirs)  # another browser: no pending sign-in here
    assert "reason=no sign-in is pending in this browser" in refusal(caplog, hop)

    # This browser's own login cookie, renamed to the other sign-in's slot.
    mine = URL(await start_login(stack, third)).query["state"]
    name, value = login_cookie(third)
    give_cookie(stack, third, name.replace(mine, theirs.query["state"]), value)
    hop = await fetch(third, theirs)
    assert "reason=the sign-in state does not match" in refusal(caplog, hop)

    assert (await fetch(first, theirs)).status == 302  # the genuine one
    stale = browsers()
    late = URL(await at_idp(stack, stale, await start_login(stack, stale)))
    later = TimestampSigner.get_timestamp(TimestampSigner("k")) + LOGIN_TTL + 5
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    hop = await fetch(stale, late)
    assert hop.status == 400
    assert "reason=the sign-in took longer than 10 minutes" in refusal(caplog, hop)


async def test_a_forged_error_redirect_shows_none_of_its_text(
        make_stack: StackFactory, browsers: Browsers, caplog: pytest.LogCaptureFixture) -> None:
    # With the browser's own state (the only way past the state check), a link's error text
    # reaches the log (escaped there) but the page shows our words only.
    stack = await make_stack()
    hop = await error_callback(stack, browsers(), "access_denied",
                               "AADSTS50105: Call +1 555 0100 and read your password to us.")
    assert hop.status == 403
    assert "555 0100" not in hop.text and "password" not in hop.text
    assert "Your account is not assigned to this application" in hop.text
    assert "555 0100" in refusal(caplog, hop)


async def test_no_aadsts_code_means_no_hint(make_stack: StackFactory, browsers: Browsers,
                                            caplog: pytest.LogCaptureFixture) -> None:
    stack = await make_stack()
    stack.mock.faults.authorize_error = ("access_denied", "Not AADSTS50105: the user gave up.")
    hop = await sign_in(stack, browsers())
    line = refusal(caplog, hop)
    assert "aadsts=" not in line and "hint=" not in line
    assert "AADSTS50105" not in hop.text and "not assigned" not in hop.text



async def test_an_unmet_step_up_logs_one_line(make_stack: StackFactory, browsers: Browsers,
                                              caplog: pytest.LogCaptureFixture,
                                              upstream_url: str) -> None:
    # Entra signed the user in 20 minutes ago, for a route that needs 15: one line, not two.
    stack = await make_stack({"upstreams": [
        {"path": "/fresh", "url": upstream_url, "access": {"max_auth_age": "15m"}}]})
    stack.mock.clock = lambda: time.time() - 1200
    hop = await sign_in(stack, browsers(), path="/fresh")
    assert hop.status == 403 and "more recent sign-in" in hop.text
    line = refusal(caplog, hop)
    assert "reason=step-up-not-satisfied" in line and f"user={ALICE}" in line
    assert "missing=auth_time" in line
