"""proxy.redirects: post-login and sign-out targets are hostile input (SPEC §5 "Open redirects")."""

from __future__ import annotations

import pytest

from proxy.redirects import is_safe, safe_target
from tests.data import open_redirects

PUBLIC_URL = "https://tools.example.com"
ALLOWED = ("www.whitelisteddomain.tld",)
# oauth2-proxy's corpus; `www.whitelisteddomain.tld` stands for an allowed host in it.
CORPUS = open_redirects()


def test_corpus_is_complete() -> None:
    assert len(CORPUS) == 559
    assert "//google.com" in CORPUS


@pytest.mark.parametrize("payload", CORPUS, ids=[f"line{n + 1}" for n in range(len(CORPUS))])
def test_corpus_payload_is_refused(payload: str) -> None:
    assert not is_safe(payload, PUBLIC_URL, ALLOWED)
    assert safe_target(payload, PUBLIC_URL, ALLOWED) == "/"


REFUSED = [
    # protocol-relative and slash/backslash confusion
    "//evil.com",
    "///evil.com",
    "////evil.com/x",
    "/\\evil.com",
    "\\\\evil.com",
    "\\/evil.com",
    "/\\/evil.com",
    "\\evil.com",
    "/.//evil.com",
    "/..//evil.com",
    # tabs, newlines and other control characters inside the slashes
    "/\t/evil.com",
    "/\n/evil.com",
    "/\r/evil.com",
    "/\r\n/evil.com",
    "/\x0b/evil.com",
    "/\x0c/evil.com",
    "/\x00/evil.com",
    "/ /evil.com",
    "\t//evil.com",
    " //evil.com",
    "//\tevil.com",
    "/%09/evil.com",
    "/%0a/evil.com",
    "/%0d%0a/evil.com",
    "/%00/evil.com",
    "/%20/evil.com",
    "/x%0d%0aLocation:%20https://evil.com",
    "/x\r\nSet-Cookie: a=b",
    # schemes without slashes, or with too few
    "http:evil.com",
    "https:evil.com",
    "http:/evil.com",
    "https:/evil.com",
    "https:///evil.com",
    "http:\\\\evil.com",
    "https:/\\evil.com",
    "https:\\/evil.com",
    # credentials and @ in the authority
    "https://tools.example.com@evil.com/",
    "https://tools.example.com:443@evil.com/",
    "https://evil.com@tools.example.com/",
    "https://user:pass@tools.example.com/",
    "https://user@tools.example.com/x",
    "https://tools.example.com%40evil.com/",
    "https://tools.example.com%2f@evil.com/",
    "https://www.whitelisteddomain.tld@evil.com/",
    "//tools.example.com@evil.com",
    # unicode lookalikes and fullwidth forms
    "／／evil.com",
    "/／evil.com",
    "＼＼evil.com",
    "/\uff3cevil.com",
    "ｈｔｔｐｓ://evil.com",
    "https://ｅｖｉｌ.com/",
    "https://tools.example.com\u3002evil.com/",
    "https://tools.example\u2024com/",
    "/\u2028/evil.com",
    "/\u3000/evil.com",
    "/\u00a0/evil.com",
    "/\ufeff/evil.com",
    "%EF%BC%8F%EF%BC%8Fevil.com",
    # percent-encoded slashes and backslashes, once, twice, three times
    "%2f%2fevil.com",
    "%2F%2Fevil.com",
    "/%2f%2fevil.com",
    "/%2F%2Fevil.com",
    "/%2fevil.com",
    "/%5cevil.com",
    "/%5Cevil.com",
    "%5c%5cevil.com",
    "/%5c%5cevil.com",
    "/%2f%5cevil.com",
    "/%252f%252fevil.com",
    "/%252F%252Fevil.com",
    "/%255cevil.com",
    "/%25252f%25252fevil.com",
    "%252f%252fevil.com",
    "/%2e%2e//evil.com",
    "/x/..%2f%2fevil.com",
    "https://tools.example.com%2eevil.com/",
    "https:%2f%2fevil.com",
    # active content
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "javascript://%0aalert(1)",
    "javascript://tools.example.com/%0aalert(1)",
    "java\tscript:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "ftp://evil.com/",
    # other hosts
    "https://evil.com/",
    "https://evil.com",
    "http://evil.com/x",
    "https://tools.example.com.evil.org/",
    "https://evil.com/https://tools.example.com/",
    "https://evil.com?https://tools.example.com/",
    "https://evil.com#https://tools.example.com/",
    "https://www.whitelisteddomain.tld.evil.com/",
    "https://evilwww.whitelisteddomain.tld/",
    "https://example.com/",
    "http://127.0.0.1/",
    "http://[::1]/",
    "http://2130706433/",
    # same host, another origin
    "http://tools.example.com/x",
    "https://tools.example.com:8443/x",
    "http://tools.example.com:443/x",
    "https://tools.example.com:99999/x",
    "https://tools.example.com:x/",
    "http://tools.example.com./x",
    "https://tools.example.com.:8443/x",
    # same origin, but a path that escapes in some decoding or normalisation
    "https://tools.example.com//evil.com",
    "https://tools.example.com/%2f%2fevil.com",
    "https://tools.example.com/\\evil.com",
    # nothing, junk and overlong input
    "",
    "evil.com",
    ".evil.com",
    "@evil.com",
    "?x=//evil.com",
    "#//evil.com",
    "/" + "a" * 5000,
    "https://tools.example.com/" + "a" * 5000,
    "/%2" + "5" * 3000 + "2f",
]


@pytest.mark.parametrize("target", REFUSED, ids=[repr(t)[:60] for t in REFUSED])
def test_refused(target: str) -> None:
    assert not is_safe(target, PUBLIC_URL, ALLOWED)
    assert safe_target(target, PUBLIC_URL, ALLOWED) == "/"
    assert safe_target(target, PUBLIC_URL, ALLOWED, default="") == ""


ALLOWED_TARGETS = [
    "/",
    "/a/b?c=d#e",
    "/a/b/",
    "/app?x=1&y=2",
    "/search?q=a%2Cb",
    "/search?q=a%20b+c",
    "https://tools.example.com:443/x",
    "/a-b_c.d~e",
    "/" + "a" * 1000,
    "https://tools.example.com/x",
    "https://tools.example.com/",
    "https://tools.example.com",
    "https://tools.example.com/a/b?c=d#e",
    "HTTPS://TOOLS.EXAMPLE.COM/x",
    "https://www.whitelisteddomain.tld/x",
    "https://www.whitelisteddomain.tld/",
]


@pytest.mark.parametrize("target", ALLOWED_TARGETS, ids=[t[:60] for t in ALLOWED_TARGETS])
def test_allowed(target: str) -> None:
    assert is_safe(target, PUBLIC_URL, ALLOWED)
    assert safe_target(target, PUBLIC_URL, ALLOWED) == target


@pytest.mark.parametrize("target", [
    "https://www.whitelisteddomain.tld/x",
    "https://anything.www.whitelisteddomain.tld/x",
])
def test_allowed_hosts_are_only_those_configured(target: str) -> None:
    assert not is_safe(target, PUBLIC_URL)
    assert safe_target(target, PUBLIC_URL) == "/"


@pytest.mark.parametrize("host", [".tools.example.com", "..tools.example.com",
                                  "x.tools.example.com", "tools.example.com.evil.org"])
def test_own_host_is_only_the_own_host(host: str) -> None:
    # Only the exact public host (any case, trailing dot) is "own"; nothing that contains it.
    assert not is_safe(f"https://{host}/x", PUBLIC_URL)
    assert is_safe("https://TOOLS.example.com./x", PUBLIC_URL)


@pytest.mark.parametrize("pattern", ["*.example.com", ".example.com"])
@pytest.mark.parametrize(("target", "expected"), [
    ("https://a.example.com/x", True),
    ("https://a.b.example.com/x", True),
    ("https://A.EXAMPLE.COM/x", True),
    ("https://evilexample.com/x", False),
    ("https://example.com.evil.org/x", False),
    ("https://a.example.com.evil.org/x", False),
    ("https://a.example.com@evil.org/x", False),
    ("https://evil.org/a.example.com", False),
    ("https://evil.org?.example.com", False),
    ("https://a.example.com//evil.org", False),
    ("javascript://a.example.com/%0aalert(1)", False),
    # The bare suffix is no host of the pattern ("*." needs a label before the dot).
    ("https://.example.com/x", False),
])
def test_wildcard_allowed_host(pattern: str, target: str, expected: bool) -> None:
    assert is_safe(target, PUBLIC_URL, (pattern,)) is expected


def test_public_url_with_port_and_http() -> None:
    public = "http://127.0.0.1:4180"
    assert is_safe("http://127.0.0.1:4180/x", public)
    assert not is_safe("http://127.0.0.1:4181/x", public)
    assert not is_safe("http://127.0.0.1/x", public)
    assert not is_safe("https://127.0.0.1:4180/x", public)
    assert not is_safe("http://localhost:4180/x", public)


def test_safe_target_defaults() -> None:
    assert safe_target(None, PUBLIC_URL) == "/"
    assert safe_target("", PUBLIC_URL) == "/"
    assert safe_target(None, PUBLIC_URL, default="") == ""
    assert safe_target("//evil.com", PUBLIC_URL, default="/home") == "/home"
    assert safe_target("/ok", PUBLIC_URL, default="/home") == "/ok"
