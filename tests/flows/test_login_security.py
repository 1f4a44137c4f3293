"""Failed sign-ins never end in a session (SPEC §5 "Failed logins", ENTRA.md §3 and §8).

Every flow runs over real sockets: browser → proxy → mock Entra ID → proxy → a recording
upstream. Each refusal is checked four ways: the status, no session cookie in the answer,
`/oauth2/userinfo` still 401 for that browser, and nothing forwarded to the upstream.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from itsdangerous import URLSafeTimedSerializer
from multidict import CIMultiDictProxy
from yarl import URL

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_TENANT_ID, DELETE, OTHER_TENANT_ID
from proxy.session.signing import LOGIN_SALT
from tests.conftest import ALICE, HTML, Browsers, Stack, StackFactory, deep_merge, free_port
from tests.data import open_redirects
from tests.support.idtoken_faults import (
    Fault,
    access_token_as_id_token,
    claims,
    header,
    hours,
    issuer,
    sign,
)

CAROL = "carol@fabrikam.example"
SESSION = re.compile(r"^azp_session(_\d+)?$")
LOGIN_PREFIX = "azp_session_login_"


# --- a recording upstream and the stacks in front of it ------------------------------------

@dataclass
class Recorder:
    """An upstream that remembers every request it received (lower-cased headers + path)."""

    url: str
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        entry = {k.lower(): v for k, v in request.headers.items()}
        entry[":path"] = request.path_qs
        seen.append(entry)
        return web.json_response({"path": request.path_qs})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Recorder(str(server.make_url("")).rstrip("/"), seen)
    await server.close()


ProxyFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def new_proxy(make_stack: StackFactory, recorder: Recorder) -> ProxyFactory:
    async def factory(extra: dict[str, Any] | None = None) -> Stack:
        upstream = {"upstreams": [{"path": "/", "url": recorder.url, "public": ["^/healthz$"]}]}
        return await make_stack(deep_merge(upstream, extra or {}))

    return factory


@pytest.fixture
async def proxy(new_proxy: ProxyFactory) -> Stack:
    return await new_proxy()


# --- one hop at a time ---------------------------------------------------------------------

@dataclass
class Hop:
    status: int
    headers: CIMultiDictProxy[str]
    body: str
    cookies: SimpleCookie

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    @property
    def text(self) -> str:
        return html.unescape(self.body)

    def session_cookies(self) -> list[str]:
        """Session cookies this answer sets (deletions, with an empty value, do not count)."""
        return [name for name, m in self.cookies.items() if SESSION.match(name) and m.value]

    def login_cookies(self) -> dict[str, str]:
        return {name: m.value for name, m in self.cookies.items()
                if name.startswith(LOGIN_PREFIX) and m.value}


async def fetch(browser: aiohttp.ClientSession, url: str | URL, *, method: str = "GET",
                headers: dict[str, str] | None = None, data: Any = None) -> Hop:
    """One request without following redirects; the browser's jar still takes its cookies."""
    async with browser.request(method, url, headers=HTML if headers is None else headers,
                               data=data, allow_redirects=False) as resp:
        cookies: SimpleCookie = SimpleCookie()
        for raw in resp.headers.getall("Set-Cookie", []):
            cookies.load(raw)
        return Hop(resp.status, resp.headers, await resp.text(), cookies)


def authorize_endpoint(stack: Stack, tenant: str = DEFAULT_TENANT_ID) -> str:
    return f"{stack.idp}/{tenant}/oauth2/v2.0/authorize"


async def start_login(stack: Stack, browser: aiohttp.ClientSession, path: str = "/",
                      tenant: str = DEFAULT_TENANT_ID) -> str:
    """Navigate to `path` without a session: the URL of Entra's authorize endpoint."""
    hop = await fetch(browser, stack.url + path)
    assert hop.status == 302, (hop.status, hop.body[:300])
    assert hop.location.startswith(authorize_endpoint(stack, tenant) + "?"), hop.location
    return hop.location


async def error_callback(stack: Stack, browser: aiohttp.ClientSession, error: str,
                         description: str) -> Hop:
    """An error redirect to the callback that carries this browser's own state (the only way
    past the state check), as a link an attacker sent would after a started sign-in."""
    state = URL(await start_login(stack, browser)).query["state"]
    return await fetch(browser, URL(stack.url + "/callback/azuread").with_query(
        state=state, error=error, error_description=description))


async def at_idp(stack: Stack, browser: aiohttp.ClientSession, authorize_url: str,
                 user: str = ALICE) -> str:
    """Let Entra sign `user` in: the callback URL it sends the browser to."""
    stack.mock.auto_user = user
    hop = await fetch(browser, authorize_url)
    assert hop.status == 302, (hop.status, hop.body[:300])
    assert hop.location.startswith(stack.url + "/callback/azuread?"), hop.location
    return hop.location


async def sign_in(stack: Stack, browser: aiohttp.ClientSession, user: str = ALICE,
                  path: str = "/", tenant: str = DEFAULT_TENANT_ID) -> Hop:
    """The whole flow up to and including the proxy's answer to the callback."""
    authorize_url = await start_login(stack, browser, path, tenant)
    return await fetch(browser, await at_idp(stack, browser, authorize_url, user))


def login_cookie(browser: aiohttp.ClientSession) -> tuple[str, str]:
    found = [(m.key, m.value) for m in browser.cookie_jar if m.key.startswith(LOGIN_PREFIX)]
    assert len(found) == 1, found
    return found[0]


def give_cookie(stack: Stack, browser: aiohttp.ClientSession, name: str, value: str) -> None:
    browser.cookie_jar.update_cookies({name: value}, URL(stack.url))


async def userinfo_status(stack: Stack, browser: aiohttp.ClientSession) -> int:
    async with browser.get(stack.url + "/oauth2/userinfo") as resp:
        await resp.read()
        return resp.status


async def assert_refused(stack: Stack, recorder: Recorder, browser: aiohttp.ClientSession,
                         hop: Hop, status: int, *reasons: str) -> None:
    """A failed sign-in: `status`, a page naming the reasons, no session anywhere."""
    assert hop.status == status, (hop.status, hop.location, hop.text[:600])
    assert not hop.location, hop.location
    assert not hop.session_cookies(), hop.headers.getall("Set-Cookie", [])
    assert "text/html" in hop.headers.get("Content-Type", "")
    for reason in reasons:
        assert reason in hop.text, (reason, hop.text[:600])
    assert "Traceback" not in hop.body
    assert await userinfo_status(stack, browser) == 401
    assert recorder.seen == []


async def assert_signed_in(stack: Stack, recorder: Recorder, browser: aiohttp.ClientSession,
                           hop: Hop, user: str = ALICE, target: str = "/") -> None:
    """A completed sign-in: back to `target` with a session that reaches the upstream."""
    assert hop.status == 302, (hop.status, hop.text[:600])
    assert hop.location == target
    assert hop.session_cookies() == ["azp_session"]
    async with browser.get(stack.url + "/oauth2/userinfo") as resp:
        assert resp.status == 200
        assert (await resp.json())["preferred_username"] == user
    final = await fetch(browser, stack.url + target)
    assert final.status == 200, final.text[:300]
    assert recorder.seen[-1][":path"] == target
    assert recorder.seen[-1]["x-forwarded-user"] == user


# --- 1. state ------------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "",
    "?code=0.Aabc",
    "?code=0.Aabc&state=",
    "?code=0.Aabc&state=short",
    "?code=0.Aabc&state=" + "A" * 40 + "%00",
    "?code=0.Aabc&state=../../" + "A" * 40,
    "?code=0.Aabc&state=" + secrets.token_urlsafe(32),
    "?code=0.Aabc&state=" + secrets.token_urlsafe(32) + "&state=" + secrets.token_urlsafe(32),
], ids=["nothing", "no-state", "empty-state", "short-state", "nul-state", "path-state",
        "never-started", "two-states"])
async def test_callback_without_a_pending_state_is_400(proxy: Stack, recorder: Recorder,
                                                       browsers: Browsers, query: str) -> None:
    browser = browsers()
    hop = await fetch(browser, URL(f"{proxy.url}/callback/azuread{query}", encoded=True))
    await assert_refused(proxy, recorder, browser, hop, 400)
    assert proxy.mock.token_requests == []


async def test_callback_state_of_this_browser_is_still_checked_against_the_url(
        proxy: Stack, recorder: Recorder, browsers: Browsers) -> None:
    # The browser has a pending login, but the callback carries a state it never started.
    browser = browsers()
    authorize_url = await start_login(proxy, browser)
    callback = await at_idp(proxy, browser, authorize_url)
    own_state = parse_qs(urlsplit(callback).query)["state"][0]
    forged = callback.replace(own_state, secrets.token_urlsafe(32))
    hop = await fetch(browser, forged)
    await assert_refused(proxy, recorder, browser, hop, 400)
    assert proxy.mock.token_requests == []


async def test_callback_delivered_to_another_browser_is_400(
        proxy: Stack, recorder: Recorder, browsers: Browsers) -> None:
    # Login CSRF: the attacker signs in, and hands their callback URL to a victim.
    attacker, victim, victim_mid_login = browsers(), browsers(), browsers()
    callback = await at_idp(proxy, attacker, await start_login(proxy, attacker))

    hop = await fetch(victim, callback)
    await assert_refused(proxy, recorder, victim, hop, 400, "another browser")

    await start_login(proxy, victim_mid_login)  # a login of its own does not help either
    hop = await fetch(victim_mid_login, callback)
    await assert_refused(proxy, recorder, victim_mid_login, hop, 400)

    # The proxy refused before redeeming: the attacker's own browser can still finish.
    assert proxy.mock.token_requests == []
    hop = await fetch(attacker, callback)
    await assert_signed_in(proxy, recorder, attacker, hop)


async def test_replayed_callback_is_400_before_the_code_is_redeemed(
        proxy: Stack, recorder: Recorder, browsers: Browsers) -> None:
    original = browsers()
    authorize_url = await start_login(proxy, original)
    name, value = login_cookie(original)
    callback = await at_idp(proxy, original, authorize_url)
    first = await fetch(original, callback)
    assert first.status == 302 and first.session_cookies() == ["azp_session"]
    redeemed = len(proxy.mock.token_requests)
    assert redeemed == 1

    # Someone who captured the callback URL and the login cookie replays both.
    thief = browsers()
    give_cookie(proxy, thief, name, value)
    hop = await fetch(thief, callback)
    await assert_refused(proxy, recorder, thief, hop, 400, "already used")

    # The original browser replays it too (its login cookie was deleted by the callback).
    again = await fetch(original, callback)
    assert again.status == 400 and not again.session_cookies()
    assert len(proxy.mock.token_requests) == redeemed


def _flip(value: str, index: int) -> str:
    char = value[index]
    return value[:index] + ("B" if char != "B" else "C") + value[index + 1:]


@pytest.mark.parametrize("tamper", [
    "payload-char", "signature-char", "no-signature", "empty", "other-login", "wrong-secret",
    "session-cookie",
])
async def test_tampered_login_cookie_is_400(new_proxy: ProxyFactory, recorder: Recorder,
                                            browsers: Browsers, tamper: str) -> None:
    proxy = await new_proxy()
    victim = browsers()
    authorize_url = await start_login(proxy, victim)
    name, value = login_cookie(victim)
    state = name.removeprefix(LOGIN_PREFIX)
    callback = await at_idp(proxy, victim, authorize_url)
    payload, timestamp, signature = value.rsplit(".", 2)
    forged = {
        "payload-char": _flip(payload, len(payload) // 2) + f".{timestamp}.{signature}",
        "signature-char": f"{payload}.{timestamp}." + _flip(signature, 5),
        "no-signature": f"{payload}.{timestamp}",
        "empty": "",
        "wrong-secret": URLSafeTimedSerializer(secrets.token_urlsafe(32), salt=LOGIN_SALT).dumps(
            {"s": state, "n": "n", "v": "v" * 43, "t": "/"}),
    }
    if tamper == "other-login":  # a genuine cookie of another login, under this state's name
        other = browsers()
        await start_login(proxy, other)
        forged[tamper] = login_cookie(other)[1]
    if tamper == "session-cookie":  # a genuine session cookie: another salt, another purpose
        other = browsers()
        await assert_signed_in(proxy, recorder, other, await sign_in(proxy, other, ALICE))
        recorder.seen.clear()
        forged[tamper] = next(m.value for m in other.cookie_jar if m.key == "azp_session")
    token_requests = len(proxy.mock.token_requests)

    attacker = browsers()
    give_cookie(proxy, attacker, name, forged[tamper])
    hop = await fetch(attacker, callback)
    await assert_refused(proxy, recorder, attacker, hop, 400)
    assert len(proxy.mock.token_requests) == token_requests


async def test_two_tabs_finish_in_reverse_order(proxy: Stack, recorder: Recorder,
                                                browsers: Browsers) -> None:
    browser = browsers()
    first = await start_login(proxy, browser, "/tab/one")
    second = await start_login(proxy, browser, "/tab/two?x=2")
    assert len([m for m in browser.cookie_jar if m.key.startswith(LOGIN_PREFIX)]) == 2
    first_callback = await at_idp(proxy, browser, first)
    second_callback = await at_idp(proxy, browser, second)

    await assert_signed_in(proxy, recorder, browser, await fetch(browser, second_callback),
                           target="/tab/two?x=2")
    await assert_signed_in(proxy, recorder, browser, await fetch(browser, first_callback),
                           target="/tab/one")
    assert not [m for m in browser.cookie_jar if m.key.startswith(LOGIN_PREFIX)]


# --- 2. ID token faults (OIDF RP tests, ENTRA.md §8) ----------------------------------------

def foreign_key_without_kid(stack: Stack) -> None:
    stack.mock.faults.jwks_without_kid = True
    stack.mock.faults.id_token_header = {"kid": DELETE}
    stack.mock.faults.sign = "other_key"


ID_TOKEN_FAULTS = [
    pytest.param(claims(nonce="012345678"), "nonce does not match", id="nonce-invalid"),
    pytest.param(claims(nonce=DELETE), "nonce does not match", id="nonce-missing"),
    pytest.param(claims(aud=DEFAULT_CLIENT_ID + "1"), "audience (aud)", id="aud-invalid"),
    pytest.param(claims(aud="https://example.com/"), "audience (aud)", id="aud-legacy-invalid"),
    pytest.param(claims(aud=DELETE), "aud claim is missing", id="aud-missing"),
    pytest.param(claims(aud=[DEFAULT_CLIENT_ID, "https://other.example/"]),
                 "several audiences", id="aud-list-without-azp"),
    pytest.param(claims(aud=["https://other.example/", "another"]), "audience (aud)",
                 id="aud-list-without-client"),
    pytest.param(claims(azp="another-app"), "authorized party (azp)", id="azp-other"),
    pytest.param(claims(iss=lambda s: issuer(s) + "1"), "issuer (iss)", id="iss-invalid"),
    pytest.param(claims(iss="https://example.org/"), "issuer (iss)", id="iss-legacy-invalid"),
    pytest.param(claims(iss=DELETE), "iss claim is missing", id="iss-missing"),
    pytest.param(claims(exp=hours(-1)), "expired", id="exp-past"),
    pytest.param(claims(exp=hours(-0.25), iat=hours(-1.25),
                        nbf=hours(-1.25)), "expired", id="exp-beyond-leeway"),
    pytest.param(claims(exp=DELETE), "exp claim is missing", id="exp-missing"),
    pytest.param(claims(iat=hours(24), exp=hours(25)), "not valid yet",
                 id="iat-future"),
    pytest.param(claims(iat=DELETE), "iat claim is missing", id="iat-missing"),
    pytest.param(claims(nbf=hours(1)), "not valid yet", id="nbf-future"),
    pytest.param(claims(sub=DELETE), "sub claim is missing", id="sub-missing"),
    pytest.param(claims(sub=""), "sub claim is missing", id="sub-empty"),
    pytest.param(claims(tid=DELETE), "tid claim is missing", id="tid-missing"),
    pytest.param(claims(tid="contoso.example"), "not a tenant GUID", id="tid-not-guid"),
    pytest.param(claims(oid=DELETE), "oid claim is missing", id="oid-missing"),
    pytest.param(sign("bad_signature"), "signature does not verify", id="sig-bad"),
    pytest.param(sign("none"), "signature algorithm 'none' is not allowed", id="alg-none"),
    pytest.param(sign("hs256_pubkey"), "signature algorithm 'HS256' is not allowed",
                 id="hs256-with-rsa-public-key"),
    pytest.param(sign("other_key"), "signature does not verify", id="key-not-in-jwks"),
    pytest.param(header(alg="RS512"), "signature algorithm 'RS512' is not allowed",
                 id="alg-rs512-header"),
    pytest.param(header(kid="not-a-published-kid"), "unknown key", id="kid-unknown"),
    pytest.param(foreign_key_without_kid, "signature does not verify",
                 id="kid-absent-foreign-key"),
    pytest.param(access_token_as_id_token, "audience (aud)", id="access-token-as-id-token"),
]


@pytest.mark.parametrize(("fault", "reason"), ID_TOKEN_FAULTS)
async def test_id_token_fault_is_401(proxy: Stack, recorder: Recorder, browsers: Browsers,
                                     fault: Fault, reason: str) -> None:
    fault(proxy)
    browser = browsers()
    hop = await sign_in(proxy, browser)
    await assert_refused(proxy, recorder, browser, hop, 401, "Sign-in failed", reason)
    assert len(proxy.mock.token_requests) == 1


async def test_valid_token_is_accepted(proxy: Stack, recorder: Recorder,
                                       browsers: Browsers) -> None:
    # The control for the faults above: the same flow without a fault signs in.
    browser = browsers()
    await assert_signed_in(proxy, recorder, browser, await sign_in(proxy, browser))


async def test_kid_absent_single_key_is_accepted(proxy: Stack, recorder: Recorder,
                                                 browsers: Browsers) -> None:
    # rp-id_token-kid-absent-single-jwks: one key, no kid anywhere → use that key.
    proxy.mock.faults.jwks_without_kid = True
    proxy.mock.faults.id_token_header = {"kid": DELETE}
    browser = browsers()
    await assert_signed_in(proxy, recorder, browser, await sign_in(proxy, browser))


async def test_kid_absent_several_keys_tries_each(proxy: Stack, recorder: Recorder,
                                                  browsers: Browsers) -> None:
    # rp-id_token-kid-absent-multiple-jwks: tokens.py tries every key when there is no kid.
    proxy.mock.rotate_keys()
    proxy.mock.faults.jwks_without_kid = True
    proxy.mock.faults.id_token_header = {"kid": DELETE}
    browser = browsers()
    await assert_signed_in(proxy, recorder, browser, await sign_in(proxy, browser))


# --- 3. key rotation -----------------------------------------------------------------------

@pytest.mark.parametrize("rotations", [1, 2])
async def test_login_after_key_rotation(proxy: Stack, recorder: Recorder, browsers: Browsers,
                                        rotations: int) -> None:
    # rp-key-rotation-op-sign-key: the second login is signed with a key the proxy never saw.
    first = browsers()
    await assert_signed_in(proxy, recorder, first, await sign_in(proxy, first))
    for _ in range(rotations):
        proxy.mock.rotate_keys()
    second = browsers()
    await assert_signed_in(proxy, recorder, second, await sign_in(proxy, second))


# --- 4. errors from Entra on the callback --------------------------------------------------

ASSIGNMENT = ("AADSTS50105: Your administrator has configured the application to block users "
              "unless they are specifically granted ('assigned') access to the application.")


@pytest.mark.parametrize(("error", "description", "status"), [
    ("access_denied", ASSIGNMENT, 403),
    ("access_denied", "AADSTS65004: User declined to consent to access the app.", 403),
    ("consent_required", "AADSTS65001: The user or administrator has not consented to use the "
                         "application.", 403),
    ("interaction_required", "AADSTS50076: you must use multi-factor authentication.", 403),
    ("server_error", "AADSTS90033: A transient error has occurred. Please try again.", 502),
    ("temporarily_unavailable", "AADSTS90033: The service is temporarily unavailable.", 502),
])
async def test_idp_error_on_callback(proxy: Stack, recorder: Recorder, browsers: Browsers,
                                     error: str, description: str, status: int) -> None:
    proxy.mock.faults.authorize_error = (error, description)
    browser = browsers()
    hop = await sign_in(proxy, browser)
    code = description.split(":")[0]
    await assert_refused(proxy, recorder, browser, hop, status, error, code)
    assert "Trace ID" not in hop.text and "Correlation ID" not in hop.text
    assert proxy.mock.token_requests == []
    # The login state is spent: the same callback cannot be tried again.
    assert not [m for m in browser.cookie_jar if m.key.startswith(LOGIN_PREFIX)]


@pytest.mark.parametrize(("error", "description"), [
    ("access_denied", "<script>alert(document.cookie)</script>"),
    ("access_denied", '"><img src=x onerror=alert(1)>'),
    ("<script>alert(1)</script>", "AADSTS90033: <b>bold</b>"),
])
async def test_idp_error_text_is_not_shown(proxy: Stack, recorder: Recorder, browsers: Browsers,
                                           error: str, description: str) -> None:
    # `error` and `error_description` ride in a URL anyone can write: the page names only a
    # known error and the AADSTS digits, never their text, not even escaped.
    proxy.mock.faults.authorize_error = (error, description)
    browser = browsers()
    hop = await sign_in(proxy, browser)
    assert hop.status in (403, 502)
    await assert_refused(proxy, recorder, browser, hop, hop.status)
    for raw in ("script", "onerror", "bold", "alert("):
        assert raw not in hop.text, hop.body


async def test_error_callback_without_state_is_400_and_shows_no_attacker_text(
        proxy: Stack, recorder: Recorder, browsers: Browsers) -> None:
    # Not from Entra for this browser: a missing state is 400 (SPEC §5), and the proxy's page
    # must not become a billboard for text an attacker put in a link.
    browser = browsers()
    url = URL(f"{proxy.url}/callback/azuread").with_query(
        error="access_denied",
        error_description="AADSTS50105: Your account is locked. Call +1 555 0100 to unlock it.")
    hop = await fetch(browser, url)
    await assert_refused(proxy, recorder, browser, hop, 400)
    assert "555 0100" not in hop.text


# --- 5. the token endpoint -----------------------------------------------------------------

@pytest.mark.parametrize("token_error", [
    (400, {"error": "invalid_grant", "error_description": "AADSTS54005: OAuth2 Authorization "
           "code was already redeemed.", "error_codes": [54005]}),
    (401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client "
           "secret provided."}),
    (500, {"error": "server_error"}),
    (200, {"token_type": "Bearer", "access_token": "x"}),
    (200, {"token_type": "Bearer", "id_token": 42}),
], ids=["invalid_grant", "invalid_client", "server-error", "no-id-token", "id-token-not-string"])
async def test_token_endpoint_error_is_502(proxy: Stack, recorder: Recorder,
                                           browsers: Browsers,
                                           token_error: tuple[int, dict[str, Any]]) -> None:
    proxy.mock.faults.token_error = token_error
    browser = browsers()
    hop = await sign_in(proxy, browser)
    await assert_refused(proxy, recorder, browser, hop, 502, "token endpoint")
    assert "mock-secret" not in hop.text


async def test_token_endpoint_timeout_is_504(new_proxy: ProxyFactory, recorder: Recorder,
                                             browsers: Browsers) -> None:
    proxy = await new_proxy({"azure": {"timeout": "1s"}})
    browser = browsers()
    authorize_url = await start_login(proxy, browser)
    callback = await at_idp(proxy, browser, authorize_url)
    proxy.mock.faults.token_delay = 3
    started = time.monotonic()
    hop = await fetch(browser, callback)
    assert time.monotonic() - started < 2.5
    await assert_refused(proxy, recorder, browser, hop, 504, "did not answer in time")


# --- 6. the IdP unavailable or misconfigured -----------------------------------------------

async def ready(stack: Stack) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as client, client.get(stack.url + "/ready") as resp:
        return resp.status, json.loads(await resp.text())


async def test_unreachable_idp_is_503(new_proxy: ProxyFactory, recorder: Recorder,
                                      browsers: Browsers) -> None:
    proxy = await new_proxy({"azure": {"cloud_instance": f"http://127.0.0.1:{free_port()}/"}})
    browser = browsers()
    for path in ("/", "/oauth2/start?rd=/x"):
        hop = await fetch(browser, proxy.url + path)
        await assert_refused(proxy, recorder, browser, hop, 503, "unreachable")
        assert not hop.login_cookies()
    status, body = await ready(proxy)
    assert status == 503 and body["ready"] is False and "unreachable" in body["reason"]


@pytest.mark.parametrize("issuer", [
    "http://evil.example/x/v2.0",
    "{idp}/" + DEFAULT_TENANT_ID + "/v2.0INVALID",
    "https://example.com",
    "{idp}/" + OTHER_TENANT_ID + "/v2.0",
    "{idp}/{{tenantid}}/v2.0",
])
async def test_discovery_issuer_mismatch_never_sends_browsers_to_authorize(
        proxy: Stack, recorder: Recorder, browsers: Browsers, issuer: str) -> None:
    # rp-discovery-issuer-not-matching-config: set before the proxy's first request.
    proxy.mock.faults.discovery_issuer = issuer.format(idp=proxy.idp)
    browser = browsers()
    for path in ("/", "/oauth2/start", "/"):
        hop = await fetch(browser, proxy.url + path)
        assert proxy.idp not in hop.location
        await assert_refused(proxy, recorder, browser, hop, 502, "issuer")
    assert proxy.mock.sessions == {} and proxy.mock.codes == {}
    status, body = await ready(proxy)
    assert status == 503 and body["ready"] is False
    assert "issuer" in body["reason"] and "does not match" in body["reason"]


async def test_discovery_down_is_502_and_not_ready(proxy: Stack, recorder: Recorder,
                                                   browsers: Browsers) -> None:
    proxy.mock.faults.discovery_status = 500
    browser = browsers()
    hop = await fetch(browser, proxy.url + "/")
    await assert_refused(proxy, recorder, browser, hop, 502, "discovery document")
    status, _ = await ready(proxy)
    assert status == 503


async def test_jwks_down_on_a_fresh_proxy_is_503(proxy: Stack, recorder: Recorder,
                                                 browsers: Browsers) -> None:
    proxy.mock.faults.jwks_status = 503
    browser = browsers()
    hop = await sign_in(proxy, browser)
    await assert_refused(proxy, recorder, browser, hop, 503, "key set (JWKS)")
    status, _ = await ready(proxy)
    assert status == 503


async def test_jwks_unreachable_on_a_fresh_proxy_fails_closed(
        proxy: Stack, recorder: Recorder, browsers: Browsers) -> None:
    # Whatever the status a broken JWKS maps to, it is never a session.
    proxy.mock.faults.jwks_status = 500
    browser = browsers()
    hop = await sign_in(proxy, browser)
    assert hop.status in (502, 503, 504)
    await assert_refused(proxy, recorder, browser, hop, hop.status, "key set (JWKS)")


# --- 7. tenants ----------------------------------------------------------------------------

LETTERED_TENANT = "abcdefab-cdef-4abc-8def-abcdefabcdef"
ORGANIZATIONS = {"azure": {"tenant_id": "organizations", "allowed_tenants": [DEFAULT_TENANT_ID]}}


async def test_organizations_with_allowed_tenants(new_proxy: ProxyFactory, recorder: Recorder,
                                                  browsers: Browsers) -> None:
    proxy = await new_proxy(ORGANIZATIONS)
    carol = browsers()
    hop = await sign_in(proxy, carol, CAROL, tenant="organizations")
    await assert_refused(proxy, recorder, carol, hop, 403, "tenant")

    alice = browsers()
    hop = await sign_in(proxy, alice, ALICE, tenant="organizations")
    await assert_signed_in(proxy, recorder, alice, hop)
    assert recorder.seen[-1]["x-forwarded-tenant-id"] == DEFAULT_TENANT_ID


async def test_organizations_allow_any_tenant(new_proxy: ProxyFactory, recorder: Recorder,
                                              browsers: Browsers) -> None:
    proxy = await new_proxy({"azure": {"tenant_id": "organizations", "allow_any_tenant": True}})
    carol = browsers()
    hop = await sign_in(proxy, carol, CAROL, tenant="organizations")
    await assert_signed_in(proxy, recorder, carol, hop, CAROL)
    assert recorder.seen[-1]["x-forwarded-tenant-id"] == OTHER_TENANT_ID


async def test_single_tenant_refuses_another_tenants_token(proxy: Stack, recorder: Recorder,
                                                           browsers: Browsers) -> None:
    proxy.mock.faults.id_token_claims = {"iss": f"{proxy.idp}/{OTHER_TENANT_ID}/v2.0",
                                         "tid": OTHER_TENANT_ID}
    browser = browsers()
    hop = await sign_in(proxy, browser)
    await assert_refused(proxy, recorder, browser, hop, 401, "issuer (iss)")


@pytest.mark.parametrize("overrides", [
    {"tid": OTHER_TENANT_ID},  # iss still says the default tenant
    {"iss": "{idp}/" + OTHER_TENANT_ID + "/v2.0"},  # tid still says the default tenant
    {"iss": "{idp}/{{tenantid}}/v2.0"},  # the template itself is no issuer
    {"tid": LETTERED_TENANT.upper(),  # exact, case-sensitive substitution
     "iss": "{idp}/" + LETTERED_TENANT + "/v2.0"},
], ids=["tid-other", "iss-other", "iss-template", "tid-case"])
async def test_organizations_issuer_must_match_tid(new_proxy: ProxyFactory, recorder: Recorder,
                                                   browsers: Browsers,
                                                   overrides: dict[str, str]) -> None:
    proxy = await new_proxy({"azure": {"tenant_id": "organizations", "allow_any_tenant": True}})
    proxy.mock.faults.id_token_claims = {k: v.format(idp=proxy.idp) for k, v in overrides.items()}
    browser = browsers()
    hop = await sign_in(proxy, browser, tenant="organizations")
    await assert_refused(proxy, recorder, browser, hop, 401, "issuer (iss)")


# --- 8. unauthenticated requests -----------------------------------------------------------

@pytest.mark.parametrize(("method", "headers"), [
    ("GET", {}),
    ("GET", {"Accept": "*/*"}),
    ("GET", {"Accept": "application/json"}),
    ("POST", HTML),
    ("PUT", HTML),
    ("DELETE", HTML),
    ("GET", {**HTML, "X-Requested-With": "XMLHttpRequest"}),
    ("GET", {**HTML, "Sec-Fetch-Mode": "cors"}),
    ("GET", {**HTML, "Sec-Fetch-Mode": "no-cors"}),
], ids=["no-accept", "any", "json", "post", "put", "delete", "xhr", "fetch-cors",
        "fetch-no-cors"])
async def test_non_browser_requests_get_401_json(proxy: Stack, recorder: Recorder,
                                                 browsers: Browsers, method: str,
                                                 headers: dict[str, str]) -> None:
    browser = browsers()
    hop = await fetch(browser, proxy.url + "/api/items?x=1", method=method, headers=headers)
    assert hop.status == 401, (hop.status, hop.location)
    assert not hop.location
    assert not hop.login_cookies() and not hop.session_cookies()
    assert (hop.headers["Content-Type"].split(";")[0],
            hop.headers.get("WWW-Authenticate", "").split(" ")[0]) == ("application/json", "Bearer")
    body = json.loads(hop.body)
    assert body["request_id"] and body["request_id"] == hop.headers["X-Request-Id"]
    assert recorder.seen == []
    assert proxy.mock.sessions == {}


async def test_browser_navigation_redirects_to_authorize(proxy: Stack, recorder: Recorder,
                                                         browsers: Browsers) -> None:
    browser = browsers()
    hop = await fetch(browser, proxy.url + "/page?a=1")
    assert hop.status == 302
    assert hop.location.startswith(authorize_endpoint(proxy) + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(hop.location).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == DEFAULT_CLIENT_ID
    assert query["redirect_uri"] == proxy.url + "/callback/azuread"
    assert query["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", query["code_challenge"])
    assert "openid" in query["scope"].split()
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["state"] != query["nonce"]
    assert "code_verifier" not in query

    login = hop.login_cookies()
    assert list(login) == [LOGIN_PREFIX + query["state"]]
    morsel = hop.cookies[LOGIN_PREFIX + query["state"]]
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/"
    assert 0 < int(morsel["max-age"]) <= 600
    assert "no-store" in hop.headers.get("Cache-Control", "")
    assert not hop.session_cookies()

    again = await fetch(browser, proxy.url + "/page?a=1")
    query2 = {k: v[0] for k, v in parse_qs(urlsplit(again.location).query).items()}
    assert query2["state"] != query["state"] and query2["nonce"] != query["nonce"]
    assert query2["code_challenge"] != query["code_challenge"]
    assert recorder.seen == []


# --- 9. open redirects through the real flow -----------------------------------------------

CORPUS = open_redirects()
SAMPLE = [p for p in CORPUS[::11] if p] + ["//evil.example/", "/\\evil.example",
                                           "https://evil.example/", "http:evil.example"]
# Characters left as they are in the "raw" variant: the proxy's one decoding is the attack.
RAW_SAFE = "!$'()*,-./:;=?@[]_~%"
_C0_SPACE = "".join(chr(c) for c in range(0x21))


def on_origin(stack: Stack, location: str) -> bool:
    """Strict: would every browser keep this Location on the proxy's origin?"""
    if any(c in location for c in "\\\t\r\n ") or location != location.strip(_C0_SPACE):
        return False
    if re.match(r"^/(?![/\\])", location):
        return True
    parts = urlsplit(location)
    own = urlsplit(stack.url)
    return (parts.scheme, parts.netloc) == (own.scheme, own.netloc) and "@" not in parts.netloc


def rd_variants(payload: str) -> list[tuple[str, str]]:
    return [("literal", quote(payload, safe="")), ("raw", quote(payload, safe=RAW_SAFE))]


async def test_start_rd_never_leads_off_origin(proxy: Stack, browsers: Browsers) -> None:
    assert len(CORPUS) == 559 and len(SAMPLE) >= 50
    offenders: list[str] = []
    for payload in SAMPLE:
        for variant, rd in rd_variants(payload):
            browser = browsers()
            hop = await fetch(browser, URL(f"{proxy.url}/oauth2/start?rd={rd}", encoded=True))
            if hop.status != 302:
                if hop.location or hop.status < 400:
                    offenders.append(f"{variant} {payload!r}: start {hop.status} {hop.location}")
                continue
            if not hop.location.startswith(authorize_endpoint(proxy) + "?"):
                offenders.append(f"{variant} {payload!r}: start → {hop.location!r}")
                continue
            done = await fetch(browser, await at_idp(proxy, browser, hop.location))
            if done.status != 302 or not on_origin(proxy, done.location):
                offenders.append(f"{variant} {payload!r}: callback {done.status} → "
                                 f"{done.location!r}")
                continue
            async with browser.get(URL(proxy.url).join(URL(done.location)),
                                   headers=HTML) as final:
                await final.read()
                if final.url.origin() != URL(proxy.url).origin():
                    offenders.append(f"{variant} {payload!r}: ended at {final.url}")
    assert offenders == []


@pytest.mark.parametrize("path", [
    "//evil.example/", "//evil.example/%2e%2e", "/%2f%2fevil.example", "/%5cevil.example",
    "/\\evil.example", "/%09/evil.example", "/.//evil.example", "/%252f%252fevil.example",
])
async def test_navigation_path_never_becomes_an_off_origin_target(
        proxy: Stack, browsers: Browsers, path: str) -> None:
    browser = browsers()
    hop = await fetch(browser, URL(proxy.url + path, encoded=True))
    if hop.status == 302:
        assert hop.location.startswith(authorize_endpoint(proxy) + "?")
        done = await fetch(browser, await at_idp(proxy, browser, hop.location))
        assert done.status == 302
        assert on_origin(proxy, done.location), done.location
    else:
        assert 400 <= hop.status < 500 and not hop.location


@pytest.mark.parametrize("template", [
    "http://{host}:{other}/x",
    "https://{host}:{port}/x",
    "http://{host}.:{other}/x",
    "https://{host}.:{port}/x",
    "http://{host}.:{other}",
])
async def test_start_rd_same_host_other_origin_is_not_followed(
        proxy: Stack, browsers: Browsers, template: str) -> None:
    # Same host, another scheme or port: another origin (another service), so not allowed.
    own = URL(proxy.url)
    target = template.format(host=own.host, port=own.port, other=free_port())
    browser = browsers()
    hop = await fetch(browser, URL(proxy.url + "/oauth2/start").with_query(rd=target))
    if hop.status == 302:
        done = await fetch(browser, await at_idp(proxy, browser, hop.location))
        assert done.status == 302
        assert on_origin(proxy, done.location), done.location
    else:
        assert 400 <= hop.status < 500 and not hop.location
    hop = await fetch(browser, URL(proxy.url + "/oauth2/sign_out").with_query(rd=target))
    assert not hop.location or on_origin(proxy, hop.location), hop.location


async def test_sign_out_rd_never_leads_off_origin(proxy: Stack, browsers: Browsers) -> None:
    browser = browsers()
    offenders: list[str] = []
    for payload in CORPUS:
        for variant, rd in rd_variants(payload):
            hop = await fetch(browser, URL(f"{proxy.url}/oauth2/sign_out?rd={rd}", encoded=True))
            if hop.location and not on_origin(proxy, hop.location) or hop.status >= 500:
                offenders.append(f"GET {variant} {payload!r}: {hop.status} → {hop.location!r}")
        hop = await fetch(browser, proxy.url + "/oauth2/sign_out", method="POST",
                          data={"rd": payload})
        if hop.location and not on_origin(proxy, hop.location) or hop.status >= 500:
            offenders.append(f"POST {payload!r}: {hop.status} → {hop.location!r}")
    assert offenders == []


async def test_sign_out_rd_keeps_a_safe_target(proxy: Stack, browsers: Browsers) -> None:
    # The control for the test above: a safe target is honoured.
    browser = browsers()
    hop = await fetch(browser, proxy.url + "/oauth2/sign_out?rd=%2Fbye%3Fa%3D1")
    assert hop.status == 302 and hop.location == "/bye?a=1"
    hop = await fetch(browser, proxy.url + "/oauth2/sign_out?rd=%2F%2Fevil.example")
    assert hop.status == 200 and not hop.location
