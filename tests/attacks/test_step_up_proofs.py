"""Step-up proofs a user did not earn (review of proxy/step_up.py), over real sockets: the
proxy, the mock Entra ID (SSO sessions, `max_age`, `prompt=login`, `amr` in ID tokens) and a
recording upstream.

Routes: `/` plain, `/mfa` MFA at any time, `/fresh` a sign-in in the last 15 minutes,
`/both` MFA within the last 15 minutes (so an old MFA must not pass for a fresh one).
"""

from __future__ import annotations

import time

import pytest

from tests.attacks.harness import Upstream, tally
from tests.conftest import ALICE, Stack, StackFactory
from tests.flows.test_step_up import walk

FIFTEEN = "15m"


@pytest.fixture
async def stepped(make_stack: StackFactory, upstream: Upstream) -> Stack:
    stack = await make_stack({"upstreams": [
        {"path": "/", "url": upstream.url},
        {"path": "/mfa", "url": upstream.url, "access": {"require_mfa": True}},
        {"path": "/fresh", "url": upstream.url, "access": {"max_auth_age": FIFTEEN}},
        {"path": "/both", "url": upstream.url,
         "access": {"max_auth_age": FIFTEEN, "require_mfa": True}},
    ]})
    stack.mock.auto_user = ALICE
    stack.mock.id_token_amr = True  # as v1-style tokens: amr says which methods were used
    return stack


async def test_an_old_mfa_is_not_made_recent_by_a_later_token(stepped: Stack,
                                                              upstream: Upstream) -> None:
    """MFA done 30 minutes ago; since then only a password. A later token that repeats the
    old `amr` without an `auth_time` (an SSO sign-in: issued now, authenticated then) must
    not date that MFA to its `iat`, or `/both` (MFA within 15 minutes) lets the user in."""
    mock = stepped.mock
    mock.users[ALICE].mfa = True
    mock.clock = lambda: time.time() - 1800  # MFA at Entra 30 minutes ago
    assert (await walk(stepped.client, stepped.url + "/mfa")).status == 200
    mock.clock = time.time
    mock.users[ALICE].mfa = False  # from now on, password only
    # An SSO sign-in now: Entra's session is the old one (amr pwd+mfa), no auth_time asked.
    assert (await walk(stepped.client, stepped.url + "/oauth2/start?rd=/")).status == 200
    # A recent sign-in for /fresh: prompt=login, password only.
    assert (await walk(stepped.client, stepped.url + "/fresh")).status == 200
    seen = len(upstream.seen)
    result = await walk(stepped.client, stepped.url + "/both")
    reached = any(a.path == "/both" for a in upstream.seen[seen:])
    tally("step-up-proof", refused=not reached, crashed=result.status >= 500, reached=reached)
    assert not reached and result.status == 403 and "multi-factor" in result.text
    # The MFA of 30 minutes ago still counts where no age is asked.
    assert (await walk(stepped.client, stepped.url + "/mfa")).hops == []


# Spellings of a stepped-up page that a sign-in's return target might read otherwise than
# the gateway does: then the sign-in would ask for less than the page needs, and the page
# would send the browser to sign in again, for ever.
SPELLINGS = ["/mfa", "/mfa/", "/mfa?x=1", "/mfa/a%2Fb", "/mfa;x", "/MFA", "//mfa", "/mfa/%2e%2e/x",
             "/mfa/./x", "/mfa#f", "/mfa?rd=/", "/mfa/%252e"]


@pytest.mark.parametrize("path", SPELLINGS)
async def test_no_spelling_of_a_stepped_up_page_makes_a_sign_in_loop(
        stepped: Stack, path: str) -> None:
    try:
        result = await walk(stepped.client, stepped.url + path)
    except AssertionError as exc:  # walk: more than 10 redirects
        tally("step-up-loop", refused=False, crashed=False, reached=True)
        raise AssertionError(f"redirect loop for {path}") from exc
    tally("step-up-loop", refused=True, crashed=result.status >= 500)
    assert result.status < 500 and len(result.hops) <= 3  # at most one sign-in
