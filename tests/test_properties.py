"""Property tests (hypothesis) of the pure parsers and checks that face hostile input.

Inputs are what the proxy can actually receive: text as aiohttp decodes it from raw bytes
(UTF-8 with surrogateescape, so any byte may appear), header names from the RFC 9110 token
alphabet, and mutations of genuine values the proxy itself produced.
"""

from __future__ import annotations

import math
import re
import secrets
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from itsdangerous.encoding import base64_decode
from multidict import CIMultiDict

from proxy.config import AccessPolicyConfig, Secret, SessionConfig, UpstreamConfig
from proxy.config_check_identity import _HEADER_NAME, _RESERVED_HEADERS
from proxy.config_load import from_dict, parse_duration
from proxy.errors import ConfigError
from proxy.headers import owned_names, upstream_headers
from proxy.identity import Identity
from proxy.redirects import is_safe
from proxy.routes import Route, RouteTable, _normalize, is_plain_path, normalize_path
from proxy.session.budget import MAX_CHUNKS
from proxy.session.cookie_store import CookieStore
from proxy.session.login_state import LoginState, LoginStateError, LoginStates
from proxy.session.store import Session
from tests.test_route_index import path_matches

FAST = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
SECRET = secrets.token_urlsafe(32)


def _session_config() -> SessionConfig:
    return SessionConfig(secret=Secret(SECRET))


# --- strategies ----------------------------------------------------------------------------

# What a header or cookie value looks like after aiohttp decodes the bytes on the wire.
wire_text = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
token = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=30)


def respell(name: str, flips: list[bool]) -> str:
    """`name` with some letters' case flipped and some '-' turned into '_'."""
    out = []
    for i, ch in enumerate(name):
        flip = flips[i % len(flips)] if flips else False
        if ch == "-" and flip:
            out.append("_")
        else:
            out.append(ch.swapcase() if flip else ch)
    return "".join(out)


# --- cookie store: load_identity -------------------------------------------------------------

STORE = CookieStore(_session_config())
IDENTITIES = [
    Identity(oid="o-1", tid="11111111-1111-4111-8111-111111111111",
             preferred_username="alice@contoso.example", groups=("g1", "g2")),
    Identity(oid="o-2", tid="11111111-1111-4111-8111-111111111111",
             preferred_username="bob@contoso.example",
             groups=tuple(secrets.token_urlsafe(24) for _ in range(160))),  # 2 chunks
]


def _genuine() -> list[dict[str, str]]:
    import asyncio

    async def save(identity: Identity) -> dict[str, str]:
        specs = await STORE.save(Session(identity), {})
        return {s.name: s.value for s in specs if s.max_age is not None}

    return [asyncio.run(save(i)) for i in IDENTITIES]


GENUINE = _genuine()  # the first fits one cookie, the second is chunked
# What the store signed: payload and timestamp (base64 decoding of the signature itself
# skips characters outside its alphabet, so "sig" and "sig\x80" verify alike).
SIGNED = {"".join(c[k] for k in sorted(c)).rsplit(".", 1)[0]: identity
          for c, identity in zip(GENUINE, IDENTITIES, strict=True)}
assert len(GENUINE[0]) == 1 and len(GENUINE[1]) > 1


@st.composite
def mutated(draw: st.DrawFn, value: str) -> str:
    how = draw(st.sampled_from(["cut", "flip", "insert", "append", "swap-dot", "same"]))
    i = draw(st.integers(0, max(len(value) - 1, 0)))
    if how == "cut":
        return value[:i]
    if how == "flip":
        return value[:i] + draw(st.characters()) + value[i + 1:]
    if how == "insert":
        return value[:i] + draw(wire_text) + value[i:]
    if how == "append":
        return value + draw(wire_text)
    if how == "swap-dot":
        return value.replace(".", draw(st.sampled_from(["", "..", "%2E", "_"])), 1)
    return value


@st.composite
def cookie_jars(draw: st.DrawFn) -> dict[str, str]:
    genuine = draw(st.sampled_from(GENUINE))
    names = ["azp_session", *[f"azp_session_{i}" for i in range(10)], "azp_session_99999999",
             "azp_session_login_x", "other"]
    jar: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(names), max_size=6, unique=True)):
        source = genuine.get(name) or draw(st.sampled_from(list(genuine.values())))
        jar[name] = draw(st.one_of(mutated(source), wire_text))
    if draw(st.booleans()):  # genuine chunks, some of them swapped in from the other session
        other = GENUINE[1]
        for name, value in other.items():
            jar[name] = draw(st.one_of(st.just(value), mutated(value)))
    return jar


def _joined(jar: dict[str, str]) -> str:
    if "azp_session" in jar:
        return jar["azp_session"]
    parts = []
    for i in range(MAX_CHUNKS):  # what the store writes is what it reads back, no more
        if f"azp_session_{i}" not in jar:
            break
        parts.append(jar[f"azp_session_{i}"])
    return "".join(parts)


@settings(FAST, max_examples=200)
@given(cookie_jars())
def test_cookie_store_only_accepts_what_it_signed(jar: dict[str, str]) -> None:
    identity = STORE.load_identity(jar)
    if identity is not None:
        signed = _joined(jar).rsplit(".", 1)[0]
        assert signed in SIGNED, _joined(jar)
        assert identity == SIGNED[signed]


@FAST
@given(st.dictionaries(st.one_of(token, st.sampled_from(["azp_session", "azp_session_0",
                                                           "azp_session_1"])), wire_text,
                       max_size=8))
def test_cookie_store_never_raises_on_arbitrary_cookies(jar: dict[str, str]) -> None:
    assert STORE.load_identity(jar) is None


def test_cookie_store_reads_its_own_cookies() -> None:  # the control for the two above
    assert [STORE.load_identity(c) for c in GENUINE] == IDENTITIES


# --- login state: finish and the eviction in start --------------------------------------------

URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
states = st.text(alphabet=URLSAFE, min_size=32, max_size=64)


@st.composite
def callbacks(draw: st.DrawFn) -> tuple[LoginStates, dict[str, str], set[str], str | None,
                                        dict[str, str]]:
    logins = LoginStates(_session_config())
    minted: dict[str, str] = {}
    cookies: dict[str, str] = {}
    for _ in range(draw(st.integers(0, 3))):
        login = LoginState(draw(states), "n" * 43, "v" * 64, "/t")
        spec = logins.start(login, cookies)[-1]
        minted[login.state] = spec.value
        cookies[spec.name] = spec.value
    names = [*minted, draw(states)]
    for name in draw(st.lists(st.sampled_from(names), max_size=3)):
        source = minted.get(name) or draw(st.sampled_from([*minted.values(), "x.y.z"]))
        cookies[logins.prefix + name] = draw(st.one_of(mutated(source), wire_text))
    state = draw(st.one_of(st.none(), wire_text, st.sampled_from(names)))
    genuine = {logins.prefix + s: v for s, v in minted.items()}
    return logins, cookies, set(minted), state, genuine


def _signed_bytes(cookie: str) -> list[bytes]:
    """A signed value's parts as the verifier reads them (itsdangerous' base64 decoding)."""
    return [base64_decode(part) for part in cookie.split(".")]


@FAST
@given(callbacks())
def test_login_state_decode_only_accepts_its_own_and_only_once(
        case: tuple[LoginStates, dict[str, str], set[str], str | None, dict[str, str]]) -> None:
    logins, cookies, minted, state, genuine = case
    try:
        login = logins.finish(state, cookies)
    except LoginStateError:
        return
    assert state is not None and state in minted
    name = logins.prefix + state
    # Only a cookie this browser was given: byte for byte, or a spelling of the same bytes
    # (base64's last character may carry padding bits that decoding ignores, so flipping them
    # spells the same signature; hypothesis found that about once in a thousand CI runs).
    assert _signed_bytes(cookies[name]) == _signed_bytes(genuine[name])
    assert login.state == state and login.target == "/t"
    with pytest.raises(LoginStateError):
        logins.finish(state, cookies)  # single use


@FAST
@given(st.dictionaries(st.one_of(token, token.map(lambda t: "azp_session_login_" + t)),
                       wire_text, max_size=60))
def test_starting_a_login_never_fails_on_the_cookies_it_finds(jar: dict[str, str]) -> None:
    logins = LoginStates(_session_config())
    specs = logins.start(LoginState.new("/"), jar)
    assert specs[-1].max_age is not None and specs[-1].name.startswith(logins.prefix)
    deleted = [s.name for s in specs[:-1]]
    assert all(s.max_age is None for s in specs[:-1]) and set(deleted) <= set(jar)


# --- redirect validation ---------------------------------------------------------------------

PUBLIC_URL = "https://tools.example.com"
ALLOWED = ("apps.example.com", "*.corp.example")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def decodings(value: str) -> list[str]:
    forms = [value]
    while len(forms) < 16 and unquote(forms[-1]) != forms[-1]:
        forms.append(unquote(forms[-1]))
    return forms


def host_allowed(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host in ("tools.example.com", "apps.example.com") or (
        host.endswith(".corp.example") and host != ".corp.example")


def _escapes(form: str) -> bool:
    return "//" in form or "\\" in form or bool(_CONTROL.search(form))


url_parts = st.sampled_from(["/", "//", "\\", "/\\", "%2f", "%5c", "%252f", "%25252f", "%2e",
                             "..", ".", "@", ":", "?", "#", "%09", "%0a", "%00", "\t", "http:",
                             "https://", "evil.com", "tools.example.com", "apps.example.com",
                             "x.corp.example", "corp.example", ":443", ":8443", "a", "b/"])
urlish = st.lists(url_parts, max_size=8).map("".join)


@st.composite
def encoded_escapes(draw: st.DrawFn) -> str:
    """A known way out of the origin, percent-encoded one to six times."""
    core = draw(st.sampled_from(["//evil.com", "/\\evil.com", "/\t/evil.com", "/%0a/evil.com",
                                 "/../evil.com", "\\\\evil.com"]))
    for _ in range(draw(st.integers(1, 6))):
        core = quote(core, safe=draw(st.sampled_from(["", "/", "%"])))
    return draw(st.sampled_from(["/", "/x/", "/x?y=", ""])) + core


@FAST
@given(st.one_of(st.text(max_size=120), urlish, encoded_escapes(),
                 urlish.map(lambda u: "https://" + u)))
@example("/%2525252F%2525252Fevil.com")
def test_an_accepted_redirect_stays_on_an_allowed_origin(target: str) -> None:
    if not is_safe(target, PUBLIC_URL, ALLOWED):
        return
    if target.startswith("/"):
        assert not any(_escapes(form) for form in decodings(target)), target
        return
    parts = urlsplit(target)
    assert parts.scheme in ("http", "https") and parts.hostname, target
    assert host_allowed(parts.hostname) and "@" not in parts.netloc, target
    tail = target[len(parts.scheme) + 3 + len(parts.netloc):]
    assert not any(_escapes(form) for form in decodings(tail)), target


@FAST
@given(st.text(max_size=300), st.text(max_size=40), st.lists(st.text(max_size=20), max_size=3))
def test_redirect_validation_never_raises(target: str, public: str, allowed: list[str]) -> None:
    is_safe(target, public, tuple(allowed))
    is_safe(target, PUBLIC_URL, ALLOWED)


# --- header stripping ------------------------------------------------------------------------

SPEC_OWNED = ["X-Forwarded-Access-Token", "X-Forwarded-Id-Token", "X-Auth-Assertion"]
OWNED_PREFIXES = ("x-ms-client-principal", "x-ms-token-", "x-auth-request-")
HOP = ["Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
       "Proxy-Authorization", "Proxy-Connection"]
OWNED_SAMPLES = [*SPEC_OWNED, "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups",
                 "X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-TOKEN-AAD-ID-TOKEN",
                 "X-Auth-Request-User", "X-Auth-Request-Anything"]


def is_configurable_header(name: str) -> bool:
    return bool(_HEADER_NAME.match(name)) and name.lower() not in _RESERVED_HEADERS


def spec_canonical(name: str) -> str:
    return name.lower().replace("_", "-")


@st.composite
def header_lists(draw: st.DrawFn) -> tuple[list[tuple[str, str]], dict[str, str], str]:
    # Only names config_check accepts: X-Request-Id or Host cannot be identity headers.
    configurable = token.filter(is_configurable_header)
    configured = draw(st.dictionaries(configurable,
                                      st.sampled_from(["preferred_username", "groups"]),
                                      max_size=3))
    assertion = draw(st.one_of(st.just(""), st.just("X-Auth-Assertion"), configurable))
    pool = [*OWNED_SAMPLES, *configured, *([assertion] if assertion else []), *HOP,
            "Cookie", "X-Forwarded-For", "X-Request-Id", "Host", "Accept"]
    names = st.one_of(token, st.builds(respell, st.sampled_from(pool),
                                       st.lists(st.booleans(), min_size=1, max_size=8)))
    headers = draw(st.lists(st.tuples(names, wire_text), max_size=25))
    if draw(st.booleans()):
        listed = draw(st.lists(st.one_of(names, token), max_size=4))
        headers.append(("Connection", ", ".join(listed)))
    if draw(st.booleans()):
        cookie = draw(st.lists(st.tuples(st.sampled_from(["azp_session", "azp_session_0",
                                                          "azp_session_login_abc", "app",
                                                          "azp_sessionx"]), token),
                               max_size=5))
        headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookie)))
    return headers, configured, assertion


@FAST
@given(header_lists(), st.booleans())
def test_no_owned_header_survives_stripping(
        case: tuple[list[tuple[str, str]], dict[str, str], str], trusted: bool) -> None:
    headers, configured, assertion = case
    incoming: CIMultiDict[str] = CIMultiDict(headers)
    owned = owned_names(configured, assertion)
    out = upstream_headers(incoming, owned=owned, cookie_prefix="azp_session", peer="10.1.2.3",
                           peer_is_trusted=trusted, scheme="https", request_id="rid-1")
    must_go = {spec_canonical(n) for n in [*SPEC_OWNED, *configured, assertion] if n}
    listed = {spec_canonical(t.strip()) for k, v in headers if spec_canonical(k) == "connection"
              for t in v.split(",")}
    rebuilt = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"}
    for name, value in out.items():
        key = spec_canonical(name)
        assert key not in must_go and not key.startswith(OWNED_PREFIXES), name
        assert key not in {spec_canonical(h) for h in HOP}, name
        assert key not in listed - rebuilt - {""}, name  # hop-by-hop by the client's Connection
        if key == "cookie":
            for part in value.split(";"):
                cookie = part.split("=", 1)[0].strip()
                assert cookie != "azp_session" and not cookie.startswith("azp_session_"), value
    assert out.getall("X-Request-Id") == ["rid-1"]
    if not trusted:
        assert out.getall("X-Forwarded-For") == ["10.1.2.3"]
        assert out.getall("X-Forwarded-Proto") == ["https"]


# --- routes ----------------------------------------------------------------------------------

PUBLIC_RES = ("^/healthz$", "^/public/", r"^/static/.*\.css$")
TABLE = RouteTable((
    UpstreamConfig(url="http://a", path="/", public=PUBLIC_RES),
    UpstreamConfig(url="http://b", path="/admin", access=AccessPolicyConfig(roles=("Admin",))),
    UpstreamConfig(url="http://c", path="/api", host="api.example.com"),
    UpstreamConfig(url="http://d", path="/", host="*.apps.example", public=("^/",)),
), AccessPolicyConfig())
ROOT: Route = TABLE.routes[0]
path_parts = st.sampled_from(["/", "//", "healthz", "public", "admin", "static", "x.css", ".",
                              "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", ";", "%3b", "%00",
                              "%0a", "%23", "#", "%3f", "%25", "%252f", "%u002e", "%c0%ae",
                              "%68", "a", "é", "%e2%80%8b", " ", "?", "=", "&"])
paths = st.lists(path_parts, max_size=10).map(lambda parts: "/" + "".join(parts))


@FAST
@given(st.one_of(paths, st.text(max_size=100)), st.one_of(st.text(max_size=40),
                                                          st.sampled_from(["api.example.com",
                                                                           "x.apps.example",
                                                                           "[::1]:80"])))
def test_route_functions_never_raise(raw: str, host: str) -> None:
    normalized = normalize_path(raw)
    assert normalized.startswith("/")
    is_plain_path(raw)
    for candidate in TABLE.routes:
        candidate.is_public(raw)
    route = TABLE.lookup(host, normalized)
    assert route is not None and path_matches(route, normalized)


@FAST
@given(st.one_of(paths, st.text(max_size=100), st.text(alphabet="/.%\\;?a", max_size=30)))
def test_the_fast_path_of_normalize_path_changes_nothing(raw: str) -> None:
    # normalize_path returns a path unchanged when it has nothing to decode or resolve:
    # it must be exactly what the full normalization gives.
    assert normalize_path(raw) == _normalize(raw)


@FAST
@given(paths)
def test_a_public_path_is_plain_and_matches_after_decoding(raw: str) -> None:
    path = raw.split("?", 1)[0]
    if ROOT.is_public(raw):
        assert is_plain_path(raw)
        decoded = unquote(path)
        assert any(re.search(p, decoded) for p in PUBLIC_RES)
        assert normalize_path(raw) == decoded  # one reading: what the upstream acts on


@FAST
@given(paths.map(lambda p: p.split("?", 1)[0].split("#", 1)[0]), st.text(max_size=40))
def test_the_query_never_decides_whether_a_path_is_public(path: str, query: str) -> None:
    assert ROOT.is_public(path + "?" + query) == ROOT.is_public(path)
    assert is_plain_path(path + "?" + query) == is_plain_path(path)


@FAST
@given(paths)
def test_a_plain_path_has_one_reading(raw: str) -> None:
    if is_plain_path(raw):
        assert normalize_path(raw) == unquote(raw.split("?", 1)[0])


# --- durations -------------------------------------------------------------------------------

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@FAST
@given(st.one_of(st.text(max_size=30), st.integers(min_value=-(10**400), max_value=10**400),
                 st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
                 st.lists(st.integers(), max_size=2)))
@example(10**400)
@example("9" * 400 + "s")
def test_duration_parsing_returns_a_finite_duration_or_says_why(value: Any) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds) and seconds >= 0


@FAST
@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(list(UNITS))), min_size=1,
                max_size=4))
def test_duration_grammar_adds_up(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * UNITS[unit] for n, unit in parts)
    assert parse_duration(text) == pytest.approx(expected)
    assert parse_duration(f"  {text} ") == pytest.approx(expected)


@settings(max_examples=200, deadline=None, database=None)
@given(st.one_of(st.integers(min_value=-(10**400), max_value=10**400), st.text(max_size=20),
                 st.floats()))
@example(10**400)
def test_a_bad_duration_in_the_config_is_a_config_error(value: Any) -> None:
    config = {"azure": {"client_id": "c", "client_secret": "s", "tenant_id":
                        "11111111-1111-4111-8111-111111111111"},
              "session": {"secret": SECRET, "max_age": value},
              "upstreams": [{"path": "/", "url": "http://127.0.0.1:1"}]}
    try:
        from_dict(config)
    except ConfigError:
        pass
